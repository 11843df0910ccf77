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

The input and output tile transforms are elementwise passes with hand-written adjoints
(`winograd_tiles`); the weight transform and the products are plain autograd ops, so the backward pass
and the double backward that R1 and DigGAN take through D are exact. Results differ from the direct
convolution by float rounding (~1e-6 relative, tests/unit/test_winograd.py) and are deterministic.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch

from .winograd_tiles import SIDE, TILE, InputTiles, OutputTiles

# Where it pays, measured per layer on a 2-core AMD EPYC (bench/winograd_layers.py, table in docs/speed.md): 64 or
# more channels, sides of 16 or more, and per image at least the work of a 64-channel 64x64 layer (in x out
# channels x pixels): 0.39-0.71 of the direct conv's time with 128 channels or more (256 at 16x16, 128 at 32x32
# and up), 0.9-1.0 with 64 (64x64 and up). Elsewhere the transform passes cost about what the saved multiplies
# do, or more: 32 channels (1.5-1.7x), a quarter of that work (64 at 32x32: 1.07x; 128 at 16x16: 0.82-1.0), and
# 8x8 images however wide (256 or 512 channels: 0.93-1.27).
MIN_CHANNELS = 64
MIN_SIDE = 16
MIN_WORK = 64 * 64 * 64 * 64  # in channels x out channels x height x width, of one image

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
    convolution with padding 1, no groups, at least MIN_CHANNELS in and out, MIN_SIDE and
    MIN_WORK per image, sides divisible by the tile, outside autocast (bf16 would amplify the transforms' rounding)."""
    if not _enabled.get():
        return False
    _, c, h, wd = x.shape
    return (
        x.device.type == "cpu" and x.dtype == torch.float32 and w.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and tuple(w.shape[2:]) == (3, 3) and padding == 1 and groups == 1
        and min(c, w.shape[0]) >= MIN_CHANNELS and c * w.shape[0] * h * wd >= MIN_WORK
        and min(h, wd) >= MIN_SIDE and h % TILE == 0 and wd % TILE == 0
    )


def _g(t0: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor) -> list[torch.Tensor]:
    """G applied along one kernel axis: 3 taps -> 6. Lavin & Gray 2016, section 4.2 (F(4x4, 3x3),
    points 0, +-1, +-2, infinity): G = [[1/4,0,0], [-1/6,-1/6,-1/6], [-1/6,1/6,-1/6], [1/24,1/12,1/6],
    [1/24,-1/12,1/6], [0,0,1]]. Elementwise on [K, C] planes: as one small einsum or matmul the weight
    transform and its backward cost 10-15 ms per 256-channel layer here, as passes under 2."""
    outer = t0 + t2
    even = torch.add(t0 * (1 / 24), t2, alpha=1 / 6)
    odd = t1 * (1 / 12)
    return [t0 * 0.25, (outer + t1) * (-1 / 6), (outer - t1) * (-1 / 6), even + odd, even - odd, t2]


def weight_tiles(w: torch.Tensor) -> torch.Tensor:
    """G w G^T for every (out, in) channel pair: [K, C, 3, 3] -> [36, K, C]."""
    taps = w.permute(2, 3, 0, 1).contiguous()  # [3, 3, K, C]: each tap a contiguous plane
    rows = _g(taps[0], taps[1], taps[2])  # 6 x [3, K, C]
    return torch.stack([u for r in rows for u in _g(r[0], r[1], r[2])])


def winograd_conv3x3(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.conv2d(x, w, bias, padding=1)` (correlation, stride 1) by Winograd F(4x4, 3x3).

    x: [N, C, H, W] with H and W multiples of 4 (channels-last memory is fastest: the transforms
    move whole channel rows); w: [K, C, 3, 3]. Returns [N, K, H, W] in channels-last memory.
    """
    n, c, h, wd = x.shape
    k = w.shape[0]
    th, tw = h // TILE, wd // TILE
    v = InputTiles.apply(x.permute(0, 2, 3, 1))  # B^T d B of every input tile, [6, 6, N, H/4, W/4, C]
    u = weight_tiles(w)  # G w G^T, [36, K, C]
    m = torch.bmm(v.view(SIDE * SIDE, n * th * tw, c), u.transpose(1, 2))  # the 36 products, summed over C: [36, tiles, K]
    y = OutputTiles.apply(m.view(SIDE, SIDE, n, th, tw, k), bias)  # A^T m A + bias, [N, H, W, K]
    return y.permute(0, 3, 1, 2)
