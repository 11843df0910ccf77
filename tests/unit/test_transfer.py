"""gan_core.training.transfer and `train --init-from`: real Trainers start from the NVlabs fixture
pkl (and from our own checkpoint format), train a couple of steps, and refuse what cannot work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gan_core.cli import main
from gan_core.config import get_preset
from gan_core.data import make_synthetic_dataset, prepare_dataset
from gan_core.sampling import load_generator, seed_latents
from gan_core.training import Trainer, load_checkpoint
from gan_core.training.transfer import (
    PretrainedError,
    adopt_network,
    apply_pretrained,
    load_pretrained,
    save_pretrained,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "nvlabs"
PKL = FIXTURE / "tiny.pkl"


def _max_diff(a: dict, b: dict) -> float:
    assert set(a) == set(b)
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def pretrained():
    return load_pretrained(PKL)


@pytest.fixture(scope="module")
def images_dir(tmp_path_factory):
    # 48x48 images: the run resizes them to the pretrained model's 32x32.
    return make_synthetic_dataset(tmp_path_factory.mktemp("synth"), n=8, resolution=48, seed=0)


def _cfg(pretrained, kimg: float = 0.008):
    cfg = get_preset("cpu-tiny")
    cfg.batch_size, cfg.kimg, cfg.tick_kimg, cfg.snapshot_ticks, cfg.num_grid = 4, kimg, kimg, 1, 4
    return adopt_network(cfg, pretrained)


def test_pkl_converts_to_our_checkpoint_format(pretrained, tmp_path):
    assert pretrained.kind == "nvlabs-pkl" and pretrained.D is not None
    assert pretrained.network.resolution == 32
    path = tmp_path / "model.pt"
    save_pretrained(pretrained, path)
    again = load_pretrained(path)
    assert again.kind == "nvlabs-pkl" and again.network == pretrained.network and again.notes == pretrained.notes
    for a, b in ((again.G, pretrained.G), (again.G_ema, pretrained.G_ema), (again.D, pretrained.D)):
        assert _max_diff(a, b) == 0.0
    # The stored file is an ordinary checkpoint: the sampler reads it and reproduces NVlabs' images.
    G, _ = load_generator(path)
    ref = np.load(FIXTURE / "reference.npz")
    with torch.no_grad():
        img = G(seed_latents(ref["seeds"].tolist(), G.z_dim), truncation_psi=0.7, noise_mode="const")
    assert np.abs(img.numpy() - ref["images_G_ema"][1]).max() < 1e-4


def test_fresh_trainer_starts_from_pkl_and_trains(pretrained, images_dir, tmp_path):
    cfg = _cfg(pretrained)
    dataset = prepare_dataset(images_dir)
    trainer = Trainer(cfg, dataset, tmp_path / "run", device="cpu")
    assert trainer.images.shape[-1] == 32
    fresh_gap = _max_diff(trainer.G.state_dict(), pretrained.G)
    apply_pretrained(trainer, pretrained)
    assert _max_diff(trainer.G.state_dict(), pretrained.G) == 0.0
    assert _max_diff(trainer.G_ema.state_dict(), pretrained.G_ema) == 0.0
    assert _max_diff(trainer.D.state_dict(), pretrained.D) == 0.0
    result = trainer.run()  # 2 steps of batch 4, then a checkpoint
    ckpt = load_checkpoint(result.last_checkpoint)
    moved = _max_diff(ckpt["G"], pretrained.G)
    assert 0.0 < moved < 0.05 < fresh_gap, (moved, fresh_gap)  # trained a little, from the pkl's weights
    assert 0.0 < _max_diff(ckpt["D"], pretrained.D) < 0.05
    with pytest.raises(PretrainedError, match="already trained or resumed"):
        apply_pretrained(trainer, pretrained)

    # Our own checkpoint is a source too (e.g. a finished job's best.pt).
    again = load_pretrained(result.last_checkpoint)
    assert again.kind == "checkpoint" and again.network == cfg.network
    t2 = Trainer(_cfg(again), dataset, tmp_path / "run2", device="cpu")
    apply_pretrained(t2, again)
    assert _max_diff(t2.D.state_dict(), ckpt["D"]) == 0.0


def test_mismatched_network_and_bad_sources_are_refused(pretrained, images_dir, tmp_path):
    cfg = get_preset("cpu-tiny")  # 64x64, other widths
    trainer = Trainer(cfg, prepare_dataset(images_dir, resolution=64), tmp_path / "run", device="cpu")
    with pytest.raises(PretrainedError, match="resolution: 64 vs 32"):
        apply_pretrained(trainer, pretrained)
    with pytest.raises(PretrainedError, match=r"network.resolution=64 \(the pretrained model has 32\)"):
        adopt_network(get_preset("cpu-tiny"), pretrained, {"network.resolution": 64})
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"\x89PNG not a model")
    with pytest.raises(PretrainedError, match="neither one of our .pt checkpoints"):
        load_pretrained(junk)
    with pytest.raises(PretrainedError, match="over the 100-byte limit"):
        load_pretrained(PKL, max_bytes=100)
    truncated = tmp_path / "cut.pt"
    save_pretrained(pretrained, truncated)
    truncated.write_bytes(truncated.read_bytes()[:5000])
    with pytest.raises(PretrainedError, match="checksum mismatch"):
        load_pretrained(truncated)


def test_cli_train_init_from_pkl(images_dir, tmp_path, capsys, pretrained):
    out = tmp_path / "run"
    common = ["train", "--data", str(images_dir), "--out", str(out), "--init-from", str(PKL), "--kimg", "0.008",
              "--batch", "4", "--tick-kimg", "0.008", "--snapshot-ticks", "1", "--device", "cpu",
              "--set", "num_grid=4"]
    assert main(common) == 0
    err = capsys.readouterr().err
    assert "starting from pretrained nvlabs-pkl" in err and "mixed precision" in err
    ckpt = load_checkpoint(out / "checkpoints" / "latest.pt")
    assert ckpt["config"]["network"]["resolution"] == 32 and ckpt["config"]["network"]["channel_max"] == 16
    assert _max_diff(ckpt["G"], pretrained.G) < 0.05

    assert main(common[:-2] + ["--set", "network.resolution=64"]) == 2
    assert "network.resolution=64 (the pretrained model has 32)" in capsys.readouterr().err
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"hello")
    assert main(["train", "--data", str(images_dir), "--out", str(out), "--init-from", str(junk)]) == 2
    assert "neither one of our .pt checkpoints" in capsys.readouterr().err
