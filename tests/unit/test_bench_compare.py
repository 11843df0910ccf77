"""bench/compare.py builds the arms it says it does, and refuses or skips what cannot run."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import compare  # noqa: E402

from gan_core.config import get_preset  # noqa: E402


def configured(preset: str, augment: str, regs: str):
    cfg = copy.deepcopy(get_preset(preset))
    compare.make_arm(augment, regs).configure(cfg)
    return cfg


def test_arm_replaces_the_preset_regularizers_with_registry_defaults() -> None:
    cfg = configured("cpu-tiny", "diffaugment", "diggan+lecam")
    assert cfg.augment.kind == "diffaugment"
    assert [(r.name, r.weight, r.interval) for r in cfg.regularizers] == [("diggan", 100.0, 8), ("lecam", 0.3, 1)]
    assert cfg.regularizers[1].params == {"decay": 0.99}
    assert configured("cpu-tiny", "ada", "none").regularizers == []  # the preset's R1 is gone too


def test_unknown_regularizer_stops_before_any_training() -> None:
    with pytest.raises(SystemExit, match="unknown regularizer 'r3'"):
        compare.make_arm("ada", "diggan+r3")


def test_an_arm_the_backbone_refuses_is_skipped_with_the_reason(capsys) -> None:
    base = get_preset("biggan-32")
    assert not compare.fits(base, compare.make_arm("none", "gp1"))
    assert "skipping none/gp1 on biggan" in capsys.readouterr().out
    assert compare.fits(base, compare.make_arm("none", "diggan+lecam"))
    assert compare.fits(get_preset("cpu-tiny"), compare.make_arm("ada", "gp1"))
