"""Winograd F(4x4, 3x3) (gan_core.networks.winograd): the direct convolution's function and gradients to second
order, only where it is switched on and measured to pay, and training with it stays bit-reproducible."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gan_core.config import PerfConfig, RegularizerConfig
from gan_core.networks.layers import conv2d_resample
from gan_core.networks.winograd import MIN_CHANNELS, MIN_SIDE, MIN_WORK, eligible, use_winograd, winograd_conv3x3
from gan_core.threads import one_thread
from gan_core.training import Trainer
from gan_core.training.perf import resolve_perf
from gan_core.training.stats import TickAccumulator
from tests.unit.test_speed_trainer import dataset
from tests.unit.test_trainer import micro_config


@pytest.fixture(autouse=True)
def single_thread():
    with one_thread():
        yield


@pytest.mark.parametrize("shape", [(2, 8, 16, 16, 5), (3, 4, 8, 12, 6), (1, 16, 4, 4, 16)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_matches_the_direct_convolution_in_float32(shape: tuple[int, ...], channels_last: bool) -> None:
    n, c, h, w_, k = shape
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, w_, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(k, c, 3, 3, generator=g) / (3 * c**0.5)
    b = torch.randn(k, generator=g)
    exact = F.conv2d(x.double(), w.double(), b.double(), padding=1)
    got = winograd_conv3x3(x, w, b)
    assert got.shape == exact.shape and got.dtype == torch.float32
    # F(4x4, 3x3) rounds a few times more than the direct conv (~1e-6 relative); a wrong tile or
    # transform is off by O(1).
    assert ((got.double() - exact).norm() / exact.norm()).item() < 2e-5
    assert got.is_contiguous(memory_format=torch.channels_last)


def test_gradients_to_second_order_are_the_convolution_s() -> None:
    # float64, so gradcheck's finite differences can see an error; the double backward is what R1 and
    # DigGAN take through D.
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 8, 4, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(2, 3, 3, 3, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(winograd_conv3x3, (x, w, b))
    assert torch.autograd.gradgradcheck(winograd_conv3x3, (x, w, b))
    # And the R1 gradient penalty's own gradient equals the direct conv's.
    def r1_grad(conv) -> torch.Tensor:
        (gx,) = torch.autograd.grad(conv(x, w, b).square().sum(), x, create_graph=True)
        return torch.autograd.grad(gx.square().sum(), w)[0]
    assert torch.allclose(r1_grad(winograd_conv3x3), r1_grad(lambda x, w, b: F.conv2d(x, w, b, padding=1)))


def wide(n: int = 4, c: int = 256, side: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(n, c, side, side, generator=g).contiguous(memory_format=torch.channels_last)
    return x, torch.randn(c, c, 3, 3, generator=g) / 48


def test_gate_is_off_outside_the_block_and_for_layers_where_it_does_not_pay() -> None:
    x, w = wide()
    assert not eligible(x, w, 1, 1)
    with use_winograd():
        assert eligible(x, w, 1, 1)
        assert eligible(*wide(c=64, side=64), 1, 1) and eligible(*wide(c=128, side=32), 1, 1)
        assert not eligible(*wide(c=32, side=128), 1, 1)  # too few channels
        assert not eligible(*wide(side=8), 1, 1) and not eligible(*wide(n=2), 1, 1)  # too little work in the call
        assert eligible(*wide(c=512, side=8), 1, 1)  # 8x8 pays with enough work
        assert not eligible(*wide(n=64, side=4), 1, 1)  # one tile a side: the transforms cost more, however much
        assert not eligible(*wide(c=64, side=32), 1, 1) and not eligible(*wide(c=128, side=16), 1, 1)
        assert not eligible(*wide(side=18), 1, 1)  # side not a multiple of the tile
        assert not eligible(x, w, 0, 1)
        assert not eligible(x, w[:, :128], 1, 2)
        assert not eligible(x.double(), w.double(), 1, 1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not eligible(x, w, 1, 1)
        with use_winograd(False):
            assert not eligible(x, w, 1, 1)
    assert not eligible(x, w, 1, 1)


@pytest.mark.parametrize("flip_weight", [True, False])
def test_conv2d_resample_uses_it_only_inside_the_block(flip_weight: bool) -> None:
    x, w = wide()
    b = torch.linspace(-1, 1, 256)
    direct = F.conv2d(x, w if flip_weight else w.flip([2, 3]), b, padding=1)
    assert torch.equal(conv2d_resample(x, w, padding=1, flip_weight=flip_weight, bias=b), direct)
    with use_winograd():
        got = conv2d_resample(x, w, padding=1, flip_weight=flip_weight, bias=b)
    assert torch.equal(got, winograd_conv3x3(x, w if flip_weight else w.flip([2, 3]), b))
    assert not torch.equal(got, direct) and torch.allclose(got, direct, atol=1e-4)


def test_policy_turns_it_on_for_float32_stylegan2_training_on_cpu_only() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_perf(PerfConfig(), cpu, "stylegan2").winograd
    assert not resolve_perf(PerfConfig(precision="bf16"), cpu, "stylegan2").winograd
    assert not resolve_perf(PerfConfig(channels_last=False), cpu, "stylegan2").winograd
    assert not resolve_perf(PerfConfig(), cpu, "sngan").winograd
    assert not resolve_perf(PerfConfig(fused_adam=False), cuda, "stylegan2").winograd
    assert not resolve_perf(PerfConfig(winograd=False), cpu, "stylegan2").winograd
    assert resolve_perf(PerfConfig(winograd=True, channels_last=False), cpu, "stylegan2").winograd


def wide_net(**perf) -> object:
    """32x32 StyleGAN2, 256 channels up to 16x16 and 128 at 32x32: G's and D's 3x3 layers there are on the gate."""
    cfg = micro_config(perf=PerfConfig(**perf))
    cfg.network.channel_base, cfg.network.channel_max = 4096, 256
    cfg.regularizers = [RegularizerConfig("diggan", 100.0, 2, {"alpha": 0.5}), RegularizerConfig("r1", 1.0, 2)]
    return cfg


def train(cfg, tmp_path: Path, steps: int = 2) -> Trainer:
    tr = Trainer(cfg, dataset(n=8), tmp_path)
    acc = TickAccumulator()
    for _ in range(steps):
        tr.train_step(acc)
    return tr


def assert_same_bits_and_within_rounding(a: Trainer, b: Trainer, other: Trainer) -> None:
    """a and b (the same config) trained to the same bits; `other` (another kernel) to within float rounding of a,
    but not to its bits."""
    lr = a.cfg.g_lr
    for name in ("G", "D"):
        sa, sb, so = (getattr(t, name).state_dict() for t in (a, b, other))
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name
        diff = torch.cat([(sa[k] - so[k]).abs().flatten() for k in sa])
        # Float rounding only, but not the same bits: the other kernel ran (R1 and DigGAN through it included).
        # Adam's first steps move a weight by up to ~1.4 lr whatever its gradient's size, so a gradient that
        # cancels to near zero may step either way: on this net NCHW against channels-last, both direct, also
        # differs on ~3% of D's weights, by up to 0.009. A wrong transform or gradient moves them all.
        assert diff.max() <= 3 * lr * 2 and (diff > 1e-4).float().mean() < 0.1, name
        assert diff.max() > 0, name


def test_training_with_it_is_bit_reproducible_and_close_to_the_direct_path(tmp_path: Path) -> None:
    a, b = train(wide_net(), tmp_path / "a"), train(wide_net(), tmp_path / "b")
    assert a.perf.winograd
    assert_same_bits_and_within_rounding(a, b, train(wide_net(winograd=False), tmp_path / "c"))


def test_layer_benchmark_times_both_and_reports_the_gate(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "layers.json"
    subprocess.run([sys.executable, str(root / "bench" / "winograd_layers.py"), "--quick", "--out", str(out)],
                   check=True, cwd=root, capture_output=True, timeout=300)
    result = json.loads(out.read_text())
    assert result["gate"] == {"min_channels": MIN_CHANNELS, "min_side": MIN_SIDE, "min_work": MIN_WORK}
    assert "cpu" in result["versions"]
    rows = {(r["channels"], r["side"]): r for r in result["layers"]}
    assert rows[(64, 64)]["direct_s"] > 0 and rows[(64, 64)]["winograd_s"] > 0 and rows[(64, 64)]["ratio"] > 0
    assert rows[(64, 64)]["gated_on"] and not rows[(32, 16)]["gated_on"]


def test_transforms_chunked_by_image_compute_the_same_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    # The tile transforms run a few images at a time (winograd_tiles.CHUNK_BYTES); every value is computed
    # by the same elementwise ops either way, so one image per chunk must give the same bits.
    from gan_core.networks import winograd_tiles

    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 8, 8, 12, generator=g).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    w = torch.randn(5, 8, 3, 3, generator=g).requires_grad_(True)
    grad = torch.randn(3, 5, 8, 12, generator=g)

    def run() -> list[torch.Tensor]:
        y = winograd_conv3x3(x, w)
        gx, gw = torch.autograd.grad(y, [x, w], grad, create_graph=True)
        return [y, gx, gw, *torch.autograd.grad(gx.square().sum() + gw.square().sum(), [x, w])]

    whole = run()
    monkeypatch.setattr(winograd_tiles, "CHUNK_BYTES", 1)
    assert len(winograd_tiles._image_chunks(3, x[0])) == 3
    assert all(torch.equal(a, b) for a, b in zip(whole, run(), strict=True))
