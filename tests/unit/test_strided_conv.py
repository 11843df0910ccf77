"""Strided convolutions with the window-matmul weight gradient (gan_core.networks.strided_conv): oneDNN's function
and gradients to second order, only where switched on and measured to pay, and training with it stays
bit-reproducible."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gan_core.config import PerfConfig
from gan_core.networks import strided_conv
from gan_core.networks.layers import conv2d_resample, setup_filter
from gan_core.networks.strided_conv import MIN_CHANNELS, MIN_WORK, conv2d, conv_transpose2d, eligible, use_window_matmul
from gan_core.threads import one_thread
from gan_core.training.perf import resolve_perf
from tests.unit.test_winograd import assert_same_bits_and_within_rounding, train, wide_net


@pytest.fixture(autouse=True)
def single_thread():
    with one_thread():
        yield


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize("side", [17, 18])  # odd: every input row in a window; even: the last row in none
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("chunk_bytes", [None, 1])  # 1: one image per matmul, accumulated
def test_function_and_gradients_match_onednn_in_float32(side: int, channels_last: bool, chunk_bytes: int | None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    if chunk_bytes is not None:
        monkeypatch.setattr(strided_conv, "CHUNK_BYTES", chunk_bytes)
    g = torch.Generator().manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(3, 8, side, side, generator=g).contiguous(memory_format=fmt).requires_grad_(True)
    w = (torch.randn(6, 8, 3, 3, generator=g) / 8).requires_grad_(True)
    b = torch.randn(6, generator=g).requires_grad_(True)
    y_ref = F.conv2d(x, w, b, stride=2)
    y = conv2d(x, w, b, 2)
    assert y.shape == y_ref.shape and _rel(y, y_ref) < 1e-6
    grad = torch.randn(y.shape, generator=g)
    for got, ref in zip(torch.autograd.grad(y, [x, w, b], grad), torch.autograd.grad(y_ref, [x, w, b], grad),
                        strict=True):
        assert got.shape == ref.shape and _rel(got, ref) < 1e-5  # a wrong window or tap is off by O(1)
    # The transposed conv (G's up-convolution), input [3, 8, side // 2, ...] -> [3, 6, 2 * (side // 2) + 1, ...].
    xt = x.detach()[:, :, : side // 2, : side // 2].requires_grad_(True)
    wt = w.detach().transpose(0, 1).contiguous().requires_grad_(True)  # [in 8, out 6, 3, 3]
    yt_ref = F.conv_transpose2d(xt, wt, stride=2)
    yt = conv_transpose2d(xt, wt, 2)
    assert yt.shape == yt_ref.shape and _rel(yt, yt_ref) < 1e-6
    gradt = torch.randn(yt.shape, generator=g)
    for got, ref in zip(torch.autograd.grad(yt, [xt, wt], gradt), torch.autograd.grad(yt_ref, [xt, wt], gradt),
                        strict=True):
        assert _rel(got, ref) < 1e-5


def test_gradients_to_second_order_are_the_convolutions() -> None:
    # float64, so gradcheck's finite differences can see an error; the double backward is what R1 and DigGAN
    # take through D's down-convolutions.
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, generator=g, requires_grad=True)
    down = lambda x, w, b: conv2d(x, w, b, 2)  # noqa: E731
    assert torch.autograd.gradcheck(down, (x, w, b)) and torch.autograd.gradgradcheck(down, (x, w, b))
    xt = torch.randn(2, 4, 4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    up = lambda x, w: conv_transpose2d(x, w, 2)  # noqa: E731
    assert torch.autograd.gradcheck(up, (xt, w)) and torch.autograd.gradgradcheck(up, (xt, w))
    up_sized = lambda x, w: conv_transpose2d(x, w, 2, (10, 8))  # noqa: E731  # one row of output_padding
    assert torch.autograd.gradgradcheck(up_sized, (xt, w))

    def r1_grad(conv) -> torch.Tensor:  # the R1 penalty's own weight gradient
        (gx,) = torch.autograd.grad(conv(x, w, b).square().sum(), x, create_graph=True)
        return torch.autograd.grad(gx.square().sum(), w)[0]
    assert torch.allclose(r1_grad(down), r1_grad(lambda x, w, b: F.conv2d(x, w, b, stride=2)))


def wide(n: int = 2, c: int = 256, k: int = 256, side: int = 33) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(n, c, side, side, generator=g).contiguous(memory_format=torch.channels_last)
    return x, torch.randn(k, c, 3, 3, generator=g) / 48


def test_gate_is_off_outside_the_block_and_for_layers_where_it_does_not_pay() -> None:
    x, w = wide()  # 16x16 output: 2 x 256 x 256 x 256 = MIN_WORK
    assert 2 * 256 * 256 * 256 == MIN_WORK
    assert not eligible(x, w, 2, 0, 1)
    with use_window_matmul():
        assert eligible(x, w, 2, 0, 1) and eligible(x, w, 2, [0, 0], 1)
        assert eligible(*wide(n=16, c=MIN_CHANNELS, k=2 * MIN_CHANNELS, side=65), 2, 0, 1)  # the 64x64 net's D
        assert not eligible(*wide(n=32, c=MIN_CHANNELS // 2, k=MIN_CHANNELS // 2, side=65), 2, 0, 1)  # cpu-tiny's
        assert not eligible(*wide(k=MIN_CHANNELS // 2), 2, 0, 1)
        assert not eligible(*wide(side=31), 2, 0, 1)  # 15x15 output: too little work in the call
        assert not eligible(*wide(n=32, c=64, k=128, side=17), 2, 0, 1)  # cpu-faces' largest: 2^24
        # Transposed: the work counts x's own (low-resolution) pixels.
        assert eligible(*wide(side=16), 2, 0, 1, transpose=True)
        assert not eligible(*wide(side=15), 2, 0, 1, transpose=True)
        assert not eligible(x, w, 1, 0, 1)  # stride 1: Winograd's or oneDNN's
        assert not eligible(x, w, 2, 1, 1) and not eligible(x, w, 2, [0, 1], 1)
        assert not eligible(x, w[:, :128], 2, 0, 2)
        assert not eligible(x.double(), w.double(), 2, 0, 1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not eligible(x, w, 2, 0, 1)
        with use_window_matmul(False):
            assert not eligible(x, w, 2, 0, 1)
    assert not eligible(x, w, 2, 0, 1)


@pytest.mark.parametrize("resample", ["down", "up"])
def test_conv2d_resample_uses_it_only_inside_the_block(resample: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # D's down-convolution (blur, then the stride-2 conv with its bias) and G's up-convolution (transposed conv,
    # then blur): the same function either way; the weight gradient goes through the matmul only inside the block.
    g = torch.Generator().manual_seed(4)
    x = torch.randn(4, 256, 32, 32, generator=g).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    w = (torch.randn(256, 256, 3, 3, generator=g) / 48).requires_grad_(True)
    b = torch.linspace(-1, 1, 256)
    kwargs = {"f": setup_filter([1, 3, 3, 1]), "padding": 1, "bias": b, ("down" if resample == "down" else "up"): 2}

    def weight_grad() -> tuple[torch.Tensor, torch.Tensor]:
        y = conv2d_resample(x, w, **kwargs)
        return y, torch.autograd.grad(y, w, torch.ones_like(y))[0]

    calls = []
    matmul = strided_conv._window_matmul
    monkeypatch.setattr(strided_conv, "_window_matmul", lambda *a: calls.append(a[0].shape) or matmul(*a))
    y_onednn, gw_onednn = weight_grad()
    assert not calls
    with use_window_matmul():
        y, gw = weight_grad()
    assert len(calls) == 1
    assert torch.equal(y, y_onednn)  # the forward is oneDNN's in both
    assert _rel(gw, gw_onednn) < 1e-5


def test_policy_turns_it_on_for_float32_stylegan2_training_on_avx2_cpus_only() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    # Measured to pay where torch runs its AVX2 kernels; not measured on AVX-512 CPUs, so off there.
    avx2 = torch.backends.cpu.get_cpu_capability() == "AVX2"
    assert resolve_perf(PerfConfig(), cpu, "stylegan2").window_matmul == avx2
    assert not resolve_perf(PerfConfig(precision="bf16"), cpu, "stylegan2").window_matmul
    assert not resolve_perf(PerfConfig(channels_last=False), cpu, "stylegan2").window_matmul
    assert not resolve_perf(PerfConfig(), cpu, "sngan").window_matmul
    assert not resolve_perf(PerfConfig(fused_adam=False), cuda, "stylegan2").window_matmul
    assert not resolve_perf(PerfConfig(window_matmul=False), cpu, "stylegan2").window_matmul
    assert resolve_perf(PerfConfig(window_matmul=True, channels_last=False), cpu, "stylegan2").window_matmul


def test_training_with_it_is_bit_reproducible_and_close_to_onednn(tmp_path: Path) -> None:
    # wide_net: 256 channels up to 16x16, 128 at 32x32, so G's and D's larger resampling convs are on the gate; R1
    # and DigGAN (double backward through D) every second minibatch.
    on = {"winograd": False, "window_matmul": True}  # on whatever the CPU (the default is per CPU kind)
    a, b = train(wide_net(**on), tmp_path / "a"), train(wide_net(**on), tmp_path / "b")
    assert a.perf.window_matmul
    onednn = train(wide_net(winograd=False, window_matmul=False), tmp_path / "c")
    assert_same_bits_and_within_rounding(a, b, onednn)


def test_layer_benchmark_times_both(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "layers.json"
    subprocess.run([sys.executable, str(root / "bench" / "strided_layers.py"), "--quick", "--out", str(out)],
                   check=True, cwd=root, capture_output=True, timeout=300)
    result = json.loads(out.read_text())
    assert "cpu" in result["versions"] and {r["kind"] for r in result["layers"]} == {"down", "up"}
    assert result["gate"] == {"min_channels": MIN_CHANNELS, "min_work": MIN_WORK}
    assert [r["gated_on"] for r in result["layers"]] == [False, True]
    for row in result["layers"]:
        assert row["onednn_s"] > 0 and row["window_matmul_s"] > 0 and row["ratio"] > 0
