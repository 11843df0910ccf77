"""On a CUDA GPU: a training step never waits for the device on the host, the backend flags follow
the config, bf16 training stays finite, and GPU training tracks the CPU's for the first steps.
Skipped without a GPU (marker `cuda`); bench/gpu_check.sh runs them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gan_core.training import Trainer
from gan_core.training.stats import TickAccumulator
from tests.unit.test_speed_trainer import dataset, micro

pytestmark = pytest.mark.cuda


def test_training_steps_do_not_sync_the_host(tmp_path: Path) -> None:
    cfg = micro()
    cfg.augment.kind = "none"  # ADA reads E[sign] every ada_interval steps, by design (trainer docstring)
    tr = Trainer(cfg, dataset(), tmp_path, device="cuda")
    acc = TickAccumulator()
    for _ in range(2):  # warm-up: cached index tensors, cuDNN autotuning
        tr.train_step(acc)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(8):  # plain steps, DigGAN steps (interval 2), R1 steps (interval 4), the DIG measurement
            tr.train_step(acc)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert acc.mean("loss_D") is not None and acc.mean("r1") is not None


@pytest.mark.parametrize("tf32", [False, True])
def test_backend_flags_follow_the_config(tmp_path: Path, tf32: bool) -> None:
    Trainer(micro(allow_tf32=tf32, cudnn_benchmark=not tf32), dataset(), tmp_path, device="cuda")
    assert torch.backends.cudnn.allow_tf32 is tf32 and torch.backends.cuda.matmul.allow_tf32 is tf32
    assert torch.backends.cudnn.benchmark is (not tf32)


def test_bf16_training_is_finite_and_regularizers_stay_float32(tmp_path: Path) -> None:
    cfg = micro(precision="bf16", allow_tf32=True)
    cfg.kimg, cfg.tick_kimg, cfg.snapshot_ticks, cfg.num_grid = 0.064, 0.032, 2, 4
    tr = Trainer(cfg, dataset(), tmp_path, device="cuda")
    seen: list[tuple[bool, torch.dtype]] = []
    tr.D.b32.fromrgb.register_forward_hook(
        lambda m, a, out: seen.append((a[0].is_leaf and a[0].requires_grad, out.dtype)))
    tr.run()
    assert {d for g, d in seen if g} == {torch.float32} and torch.bfloat16 in {d for g, d in seen if not g}
    import json

    ticks = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert all(abs(t["loss_D"]) < 1e3 and t["dig"] is not None for t in ticks)


def test_networks_and_input_gradients_match_the_cpu(tmp_path: Path) -> None:
    """The same weights and inputs (TF32 off, channels-last on both): G's images, D's logits and the
    R1/DigGAN input gradient agree with the CPU's to float32 rounding."""
    tr = Trainer(micro(allow_tf32=False, cudnn_benchmark=False), dataset(), tmp_path / "cpu")
    G, D = tr.G, tr.D
    z = torch.randn(8, G.z_dim)
    out = {}
    for device in ("cpu", "cuda"):
        G.to(device), D.to(device)
        img = G(z.to(device), noise_mode="const")
        x = img.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
        logits = D(x)
        (grad,) = torch.autograd.grad(logits.sum(), x)
        out[device] = [t.detach().cpu() for t in (img, logits, grad)]
    for name, a, b in zip(("images", "logits", "input gradient"), out["cpu"], out["cuda"]):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-4 * float(a.abs().max())), name
