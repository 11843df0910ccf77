"""Short real training runs with every regularizer, alone and combined, and an exact resume of the
stateful ones (LeCam anchors, NICE sigma, MaskedGAN spectrum statistics)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from gan_core.config import RegularizerConfig, get_preset
from gan_core.data import make_synthetic_dataset, prepare_dataset
from gan_core.regularizers import REGISTRY
from gan_core.training import Trainer, load_checkpoint
from tests.recorder import Recorder

# NICE: a target below -1 makes sigma rise every step, so the noise is really exercised in 12 steps.
RUN_PARAMS = {"nice": {"target": -2.0, "adjust_kimg": 0.02}}
SINGLE = sorted(REGISTRY)
COMBOS = [("diggan", "lecam"), ("diggan", "r1")]


def micro_config(regs: list[RegularizerConfig], kimg: float = 0.048, tick_kimg: float = 0.048):
    """32x32 StyleGAN2, batch 4: 12 iterations in one tick and one snapshot (as in test_trainer.py)."""
    cfg = get_preset("cpu-tiny")
    net = cfg.network
    net.resolution, net.channel_base, net.channel_max = 32, 512, 32
    net.z_dim = net.w_dim = 32
    cfg.batch_size, cfg.kimg, cfg.tick_kimg, cfg.snapshot_ticks, cfg.num_grid = 4, kimg, tick_kimg, 1, 4
    cfg.augment.ada_kimg = 1.0  # p moves within a few steps: penalties differentiate through ADA
    cfg.regularizers = regs
    return cfg


def reg_config(name: str, interval: int = 2) -> RegularizerConfig:
    cls = REGISTRY[name]
    weight = getattr(cls, "default_weight", None) or {"diggan": 100.0, "r1": 1.0}[name]
    return RegularizerConfig(name, weight, interval, dict(RUN_PARAMS.get(name, {})))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = make_synthetic_dataset(tmp_path_factory.mktemp("synth"), n=12, resolution=32, seed=0)
    return prepare_dataset(folder, resolution=32)


def _spy(trainer: Trainer) -> dict[str, list[dict[str, float]]]:
    """Record each regularizer's stats every time the trainer applies it."""
    seen: dict[str, list[dict[str, float]]] = {}
    for reg in trainer.regularizers:
        calls = seen.setdefault(reg.name, [])

        def wrapped(ctx, _orig=reg.penalty, _calls=calls):
            loss, stats = _orig(ctx)
            assert loss.ndim == 0 and torch.isfinite(loss)
            _calls.append(stats)
            return loss, stats

        reg.penalty = wrapped
    return seen


@pytest.mark.parametrize("names", [(n,) for n in SINGLE] + COMBOS, ids=lambda n: "+".join(n))
def test_short_training_run(names, dataset, tmp_path: Path) -> None:
    cfg = micro_config([reg_config(n) for n in names])
    trainer = Trainer(cfg, dataset, tmp_path, callbacks=(rec := Recorder()))
    seen = _spy(trainer)
    result = trainer.run()
    assert result.kimg == pytest.approx(0.048) and len(rec.ticks) == 1
    tick = rec.ticks[0]
    assert math.isfinite(tick["loss_D"]) and math.isfinite(tick["loss_G"]) and tick["dig"] is not None
    for n in names:
        assert len(seen[n]) == 6, n  # every second of 12 iterations
        assert all(math.isfinite(v) for stats in seen[n] for v in stats.values()), (n, seen[n])
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "latest.pt")
    saved = ckpt["regularizers"]
    assert [k.split(":")[1] for k in saved] == list(names)
    stateful = {"lecam": "ema_real", "nice": "sigma", "maskedgan": "log_power_real", "diggan": "prev_real"}
    for i, n in enumerate(names):
        if n in stateful:
            assert stateful[n] in saved[f"{i}:{n}"], n
    if "nice" in names:
        assert trainer.regularizers[names.index("nice")].sigma > 0
        assert any(s["nice_consistency"] > 0 for s in seen["nice"])


def test_stateful_regularizers_resume_exactly(dataset, tmp_path: Path) -> None:
    regs = lambda: [reg_config("lecam", 1), reg_config("nice", 1), reg_config("maskedgan", 2)]  # noqa: E731
    straight = Trainer(micro_config(regs(), kimg=0.032, tick_kimg=0.016), dataset, tmp_path / "a")
    straight.run()
    first = Trainer(micro_config(regs(), kimg=0.032, tick_kimg=0.016), dataset, tmp_path / "b",
                    callbacks=Recorder(stop_after_ticks=1))
    res = first.run()
    assert res.stopped
    resumed = Trainer(micro_config(regs(), kimg=0.032, tick_kimg=0.016), dataset, tmp_path / "c",
                      resume_from=res.last_checkpoint)
    assert resumed.regularizers[1].sigma == first.regularizers[1].sigma > 0
    resumed.run()
    for a, b in zip(straight.regularizers, resumed.regularizers):
        sa, sb = a.extra_state(), b.extra_state()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), a.name
    sd_a, sd_b = straight.D.state_dict(), resumed.D.state_dict()
    for k in sd_a:
        assert torch.equal(sd_a[k], sd_b[k]), f"D.{k} differs after resume"
