"""Winograd F(4x4, 3x3) convolution for wide 3x3 layers on CPU.

Lavin & Gray 2016, "Fast Algorithms for Convolutional Neural Networks" (arXiv:1509.09308): a 3x3
stride-1 convolution computes each 4x4 output tile from a 6x6 input tile with 36 multiplies per pair
of input and output channels instead of 144. The price is three linear transforms (input tiles,
weights, output tiles), which are memory passes; the 36 products become one batched matmul.

Why: float32 convolutions already run near this CPU's peak (docs/speed.md, "How far fp32 can go"),
so the only way to make them cheaper is less arithmetic for the same function. It pays only where
the channel count is high enough for the saved multiplies to outweigh the transform passes, which
`bench/winograd_layers.py` measures per layer shape (the rule in `eligible`). cuDNN picks Winograd
by itself on a GPU, so this path is for CPU only.

The input, output and weight transforms are elementwise passes with hand-written adjoints as their
backward (`winograd_tiles`, `LinearMap`), and each adjoint's backward is the transform again; the products
are a plain `torch.bmm`. So the backward pass and the double backward that R1 and DigGAN take through D are
exact. Results differ from the direct
convolution by float rounding (~1e-6 relative, tests/unit/test_winograd.py) and are deterministic.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence

import torch

from .winograd_tiles import SIDE, TILE, LinearMap, OutputTiles, sums_and_differences, transform_input

# Where it pays, measured per layer on a 2-core AMD EPYC (bench/winograd_layers.py, table in docs/speed.md): 64 or
# more channels, sides of 8 or more, and per call at least 2^26 multiply-adds' worth of work (images x in x out
# channels x pixels; the weight transform and each pass's dispatch are costs per call, not per image): 0.35-0.62 of
# the direct conv's time with 128 channels or more at 16x16 and up, 0.78-0.81 with 64 at 64x64, 0.69 for 128 at
# 16x16 and 0.78-0.79 at 8x8 (256 channels, 16 images; 512, 8 images). Below it the transform passes cost about what
# the saved multiplies do, or more: half that work (256 at 8x8 with 8 images: 1.19; 128 at 16x16 and 64 at 32x32
# with 8 images: 0.78-0.89, left out to keep one simple rule), a quarter (64 at 16x16, 16 images: 1.29), and 32
# channels (1.26-1.37).
MIN_CHANNELS = 64
MIN_SIDE = 8
MIN_WORK = 1 << 26  # images x in channels x out channels x height x width, of one call

_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("winograd_enabled", default=False)


@contextlib.contextmanager
def use_winograd(enabled: bool = True) -> Iterator[None]:
    """Run eligible 3x3 convolutions inside this block with Winograd (the trainer's `perf.winograd`)."""
    token = _enabled.set(enabled)
    try:
        yield
    finally:
        _enabled.reset(token)


def eligible(x: torch.Tensor, w: torch.Tensor, padding: int, groups: int) -> bool:
    """True where Winograd is on for this block and measured to pay: a float32 CPU 3x3 stride-1
    convolution with padding 1, no groups, at least MIN_CHANNELS in and out, MIN_SIDE, MIN_WORK in the
    call, sides divisible by the tile, outside autocast (bf16 would amplify the transforms' rounding)."""
    if not _enabled.get():
        return False
    n, c, h, wd = x.shape
    return (
        x.device.type == "cpu" and x.dtype == torch.float32 and w.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and tuple(w.shape[2:]) == (3, 3) and padding == 1 and groups == 1
        and min(c, w.shape[0]) >= MIN_CHANNELS and n * c * w.shape[0] * h * wd >= MIN_WORK
        and min(h, wd) >= MIN_SIDE and h % TILE == 0 and wd % TILE == 0
    )


def _g(t: Sequence[torch.Tensor], out: Sequence[torch.Tensor], s1: torch.Tensor, s2: torch.Tensor) -> None:
    """out_i = sum_a G[i, a] t_a: G applied along one kernel axis, 3 taps -> 6. Lavin & Gray 2016, section 4.2
    (F(4x4, 3x3), points 0, +-1, +-2, infinity): G = [[1/4,0,0], [-1/6,-1/6,-1/6], [-1/6,1/6,-1/6],
    [1/24,1/12,1/6], [1/24,-1/12,1/6], [0,0,1]]. Elementwise over [C, K] planes: for a 256-channel layer the
    weight transform and its backward cost 10-15 ms here as one small einsum or matmul, 7.5 ms as autograd'd
    passes, 4.4 ms as these passes with the hand-written adjoint (`LinearMap`; interleaved, one thread)."""
    torch.add(t[0], t[2], out=s1)
    torch.mul(t[0], 1 / 24, out=s2).add_(t[2], alpha=1 / 6)
    torch.mul(t[0], 0.25, out=out[0])
    torch.add(s1, t[1], out=out[1]).mul_(-1 / 6)
    torch.sub(s1, t[1], out=out[2]).mul_(-1 / 6)
    torch.add(s2, t[1], alpha=1 / 12, out=out[3])
    torch.sub(s2, t[1], alpha=1 / 12, out=out[4])
    out[5].copy_(t[2])


def _gt(g: Sequence[torch.Tensor], out: Sequence[torch.Tensor], s: Sequence[torch.Tensor]) -> None:
    """out_a = sum_i G[i, a] g_i (the adjoint of `_g`, 6 -> 3); s: four scratch tensors."""
    p, q, r, t = sums_and_differences(g, s)
    torch.mul(g[0], 0.25, out=out[0]).add_(p, alpha=-1 / 6).add_(r, alpha=1 / 24)
    torch.mul(t, 1 / 12, out=out[1]).add_(q, alpha=-1 / 6)
    torch.add(g[5], r, alpha=1 / 6, out=out[2]).add_(p, alpha=-1 / 6)


def weight_tiles(w: torch.Tensor) -> torch.Tensor:
    """G w G^T for every (out, in) channel pair: [K, C, 3, 3] -> [36, C, K] (differentiable to any order). In
    channels-first order so that it is the products' right-hand matrix as is, and their weight gradient (v^T m)
    arrives in its layout: transposed, autograd would copy it before the adjoint."""
    return LinearMap.apply(w, (_weight_tiles, _weight_tiles_adjoint))


def _weight_tiles(w: torch.Tensor) -> torch.Tensor:
    k, c = w.shape[:2]
    taps = w.permute(2, 3, 1, 0).contiguous()  # [3, 3, C, K]: each tap a contiguous plane
    rows = w.new_empty(SIDE, 3, c, k)  # G along the kernel's first axis
    _g(taps, rows, *w.new_empty(2, 3, c, k))
    u = w.new_empty(SIDE, SIDE, c, k)  # then along its second: each pass covers all six rows at once
    _g(rows.unbind(1), u.unbind(1), *w.new_empty(2, SIDE, c, k))
    return u.view(SIDE * SIDE, c, k)


def _weight_tiles_adjoint(u: torch.Tensor) -> torch.Tensor:
    """[36, C, K] -> sum over (i, j) of G[i, a] G[j, b] u_ij: [K, C, 3, 3]."""
    c, k = u.shape[1:]
    u = u.contiguous().view(SIDE, SIDE, c, k)
    rows = u.new_empty(SIDE, 3, c, k)
    _gt(u.unbind(1), rows.unbind(1), u.new_empty(4, SIDE, c, k))
    taps = u.new_empty(3, 3, c, k)
    _gt(rows, taps, u.new_empty(4, 3, c, k))
    return taps.permute(3, 2, 0, 1)


def winograd_conv3x3(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.conv2d(x, w, bias, padding=1)` (correlation, stride 1) by Winograd F(4x4, 3x3).

    x: [N, C, H, W] with H and W multiples of 4 (channels-last memory is fastest: the transforms
    move whole channel rows); w: [K, C, 3, 3]. Returns [N, K, H, W] in channels-last memory.
    """
    n, c, h, wd = x.shape
    k = w.shape[0]
    th, tw = h // TILE, wd // TILE
    v = transform_input(x.permute(0, 2, 3, 1))  # B^T d B of every input tile, [6, 6, N, H/4, W/4, C]
    u = weight_tiles(w)  # G w G^T, [36, C, K]
    m = torch.bmm(v.view(SIDE * SIDE, n * th * tw, c), u)  # the 36 products, summed over C: [36, tiles, K]
    y = OutputTiles.apply(m.view(SIDE, SIDE, n, th, tw, k), bias)  # A^T m A + bias, [N, H, W, K]
    return y.permute(0, 3, 1, 2)
