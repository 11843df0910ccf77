"""bench/roofline.py counts the FLOPs of real passes (forward, backward, double backward) by torch's formulas,
and a side-by-side arm of ours can carry a precision setting."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import roofline  # noqa: E402
from side_by_side import Arm, _build_ours  # noqa: E402
from train_step import add_spec_arguments, spec_for  # noqa: E402


def test_flop_count_of_a_conv_forward_backward_and_double_backward() -> None:
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    w = torch.randn(5, 4, 3, 3, requires_grad=True)
    forward = 2 * 2 * 5 * 4 * 9 * 8 * 8  # 2 FLOPs per multiply-add, one per weight tap per output pixel
    with roofline.FlopCount() as c:
        F.conv2d(x, w, padding=1)
    assert c.total == forward
    with roofline.FlopCount() as c:
        F.conv2d(x, w, padding=1).sum().backward()
    assert c.total == 3 * forward  # the backward takes the input and the weight gradient
    with roofline.FlopCount() as c:
        (g,) = torch.autograd.grad(F.conv2d(x, w, padding=1).sum(), x, create_graph=True)
        g.square().sum().backward()  # R1's shape: a penalty on the input gradient
    assert c.total > 3 * forward


def small_spec(r1_interval: int) -> dict:
    """A 32x32 network small enough for a test, through the flags the bench scripts share."""
    ap = argparse.ArgumentParser()
    add_spec_arguments(ap)
    args = ap.parse_args(["--preset", "cpu-tiny", "--res", "32", "--cbase", "256", "--cmax", "32", "--map", "1",
                          "--batch", "4", "--zdim", "32", "--r1-gamma", "1", "--r1-interval", str(r1_interval),
                          "--augment", "none"])
    return spec_for(args)[1]


def test_flops_per_kimg_of_a_small_spec_counts_every_minibatch() -> None:
    spec = small_spec(r1_interval=2)
    one = roofline.flops_per_kimg(spec, 1)["flops_per_kimg"]
    two = roofline.flops_per_kimg(spec, 2)["flops_per_kimg"]
    assert one > 0
    # R1 every 2: the count of one covers minibatch 1 (no R1), the count of two adds minibatch 2 (R1's).
    assert two > one


def test_an_arm_of_ours_takes_its_precision(tmp_path: Path) -> None:
    spec = small_spec(r1_interval=16)
    root = str(Path(__file__).resolve().parents[2])
    dataset_class = sys.modules["gan_core.data.prepared"].PreparedDataset
    runner = _build_ours(Arm("ours_bf16", "ours", root, spec, perf={"precision": "bf16"}), str(tmp_path), "cpu")
    # An arm of this checkout keeps the gan_core already imported: a fresh import would give its classes a
    # second identity in this process, and the tests after this one would fail to pickle them.
    assert sys.modules["gan_core.data.prepared"].PreparedDataset is dataset_class
    runner.step()
    stats = runner.tick()
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())


def test_the_activation_ablation_changes_the_function_only_inside_its_block() -> None:
    import ablate_activations

    from gan_core.networks.layers import Conv2dLayer

    layer = Conv2dLayer(4, 4, kernel_size=3, activation="lrelu", conv_clamp=0.01)
    x = torch.randn(2, 4, 8, 8)
    full = layer(x)
    with ablate_activations.activations_removed():
        ablated = layer(x)
    assert full.abs().max() <= 0.01 + 1e-6  # the clamp ran
    assert ablated.abs().max() > 0.01  # no clamp, no leaky ReLU inside the block
    assert torch.equal(layer(x), full)  # and the real function is back after it

    result = ablate_activations.ablate(small_spec(r1_interval=2), rounds=1, steps=1, warmup=1)
    assert len(result["seconds"]["full"]) == len(result["seconds"]["without_activations"]) == 1
    assert result["ratio_per_round"][0] > 0
