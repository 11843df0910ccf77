"""Real training steps on tiny configs: ticks, snapshots, exact resume, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gan_core.config import RegularizerConfig, get_preset
from gan_core.data import make_synthetic_dataset, prepare_dataset
from gan_core.sampling import load_generator
from gan_core.training import (
    CheckpointError,
    Trainer,
    load_checkpoint,
)
from tests.recorder import Recorder

TICK_KEYS = {"tick", "kimg", "total_kimg", "loss_G", "loss_D", "r1", "dig", "grad_norm_real", "grad_norm_fake",
             "D_real", "D_fake", "augment_p", "sec_per_kimg", "eta_seconds", "time"}


def micro_config(kimg: float = 0.048, **kw):
    """A 32x32 StyleGAN2 small enough for a few steps per second on CPU."""
    cfg = get_preset("cpu-tiny")
    cfg.network.resolution = 32
    cfg.network.channel_base = 512
    cfg.network.channel_max = 32
    cfg.network.z_dim = cfg.network.w_dim = 32
    cfg.batch_size = 4
    cfg.kimg = kimg
    cfg.tick_kimg = 0.016
    cfg.snapshot_ticks = 1
    cfg.num_grid = 4
    cfg.augment.ada_kimg = 1.0  # let p move visibly within a few steps
    cfg.regularizers = [RegularizerConfig("diggan", 100.0, 2, {"alpha": 0.5}), RegularizerConfig("r1", 1.0, 4)]
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = make_synthetic_dataset(tmp_path_factory.mktemp("synth"), n=12, resolution=32, seed=0)
    return prepare_dataset(folder, resolution=32)


def test_short_training_run_reports_ticks_and_writes_snapshots(dataset, tmp_path: Path) -> None:
    rec = Recorder()
    result = Trainer(micro_config(), dataset, tmp_path, callbacks=rec).run()
    assert result.kimg == pytest.approx(0.048) and not result.stopped
    assert len(rec.ticks) == 3
    for t in rec.ticks:
        assert TICK_KEYS <= set(t)
        assert t["dig"] is not None and t["grad_norm_real"] > 0 and t["grad_norm_fake"] > 0
    assert rec.ticks[-1]["eta_seconds"] == 0
    lines = (tmp_path / "stats.jsonl").read_text().splitlines()
    assert [json.loads(line)["tick"] for line in lines] == [1, 2, 3]
    assert len(rec.snapshots) == 3 and rec.snapshots[-1].final
    snap = rec.snapshots[-1]
    assert snap.checkpoint.is_file() and snap.grid.is_file()
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "latest.pt")
    assert ckpt["progress"]["cur_nimg"] == 48 and ckpt["config"]["network"]["resolution"] == 32
    G, cfg = load_generator(snap.checkpoint)
    assert G(torch.randn(2, G.z_dim)).shape == (2, 3, 32, 32)


def test_dig_is_logged_without_diggan(dataset, tmp_path: Path) -> None:
    cfg = micro_config(kimg=0.032)
    cfg.regularizers = [RegularizerConfig("r1", 1.0, 4)]
    rec = Recorder()
    Trainer(cfg, dataset, tmp_path, callbacks=rec).run()
    assert all(t["dig"] is not None and t["dig"] >= 0 for t in rec.ticks)


def test_same_seed_same_first_tick(dataset, tmp_path: Path) -> None:
    a, b = Recorder(), Recorder()
    Trainer(micro_config(kimg=0.016), dataset, tmp_path / "a", callbacks=a).run()
    Trainer(micro_config(kimg=0.016), dataset, tmp_path / "b", callbacks=b).run()
    for key in ("loss_G", "loss_D", "dig", "r1", "augment_p"):
        assert a.ticks[0][key] == b.ticks[0][key], key


def test_interrupted_and_resumed_run_matches_uninterrupted(dataset, tmp_path: Path) -> None:
    straight = Trainer(micro_config(), dataset, tmp_path / "straight")
    straight.run()

    first = Recorder(stop_after_ticks=1)
    res = Trainer(micro_config(), dataset, tmp_path / "split", callbacks=first).run()
    assert res.stopped and res.kimg == pytest.approx(0.016)
    resumed = Trainer(micro_config(), dataset, tmp_path / "split2", resume_from=res.last_checkpoint)
    assert resumed.cur_nimg == 16
    out = resumed.run()
    assert out.kimg == pytest.approx(0.048)
    for name in ("G", "D", "G_ema"):
        sa = getattr(straight, name).state_dict()
        sb = getattr(resumed, name).state_dict()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), f"{name}.{k} differs after resume"
    assert float(straight.augment.p) == float(resumed.augment.p)


def test_ada_probability_moves_during_training(dataset, tmp_path: Path) -> None:
    t = Trainer(micro_config(kimg=0.064), dataset, tmp_path)
    t.run()
    stats = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert len({s["augment_p"] for s in stats}) > 1  # p is steered, not frozen


def test_corrupt_checkpoint_is_refused(dataset, tmp_path: Path) -> None:
    res = Trainer(micro_config(kimg=0.016), dataset, tmp_path).run()
    data = bytearray(res.last_checkpoint.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "bad.pt"
    bad.write_bytes(bytes(data))
    (tmp_path / "bad.pt.sha256").write_text(Path(str(res.last_checkpoint) + ".sha256").read_text())
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(bad)
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(CheckpointError):
        load_checkpoint(truncated)
