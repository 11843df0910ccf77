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

Pure PyTorch ops, no custom autograd function: autograd derives the backward pass and the double
backward that R1 and DigGAN take through D. Results differ from the direct convolution by float
rounding (~1e-6 relative, tests/unit/test_winograd.py) and are deterministic.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Iterator

import torch
import torch.nn.functional as F

TILE = 4  # output tile m; input tile a = m + 2 (3x3 kernel)
_A = TILE + 2

# Lavin & Gray 2016, section 4.2 (F(4x4, 3x3)), interpolation points 0, +-1, +-2, infinity.
_BT = [[4, 0, -5, 0, 1, 0],
       [0, -4, -4, 1, 1, 0],
       [0, 4, -4, -1, 1, 0],
       [0, -2, -1, 2, 1, 0],
       [0, 2, -1, -2, 1, 0],
       [0, 4, 0, -5, 0, 1]]
_G = [[1 / 4, 0, 0],
      [-1 / 6, -1 / 6, -1 / 6],
      [-1 / 6, 1 / 6, -1 / 6],
      [1 / 24, 1 / 12, 1 / 6],
      [1 / 24, -1 / 12, 1 / 6],
      [0, 0, 1]]
_AT = [[1, 1, 1, 1, 1, 0],
       [0, 1, -1, 2, -2, 0],
       [0, 1, 1, 4, 4, 0],
       [0, 1, -1, 8, -8, 1]]

# The smallest layer where it pays, measured on two 2-core AVX-512 CPUs (bench/winograd_layers.py, docs/speed.md):
# 256 channels and more at 16x16 and up gain (0.46-0.82 of the time); 128 at 32x32 breaks even; 256 at 8x8 and
# 64 at 64x64 lose to the transform passes.
MIN_CHANNELS = 256
MIN_PIXELS = 16 * 16

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
    convolution with padding 1, no groups, at least MIN_CHANNELS in and out and MIN_PIXELS per
    image, sides divisible by the tile, outside autocast (bf16 would amplify the transforms' rounding)."""
    if not _enabled.get():
        return False
    n, c, h, wd = x.shape
    return (
        x.device.type == "cpu" and x.dtype == torch.float32 and w.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and tuple(w.shape[2:]) == (3, 3) and padding == 1 and groups == 1
        and min(c, w.shape[0]) >= MIN_CHANNELS and h * wd >= MIN_PIXELS and h % TILE == 0 and wd % TILE == 0
    )


@functools.cache
def _matrices(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # Built in float64, then rounded once: G's thirds and sixths are not exact in float32 either way.
    def mat(rows: list[list[float]]) -> torch.Tensor:
        return torch.tensor(rows, dtype=torch.float64).to(device=device, dtype=dtype)
    return mat(_BT), mat(_G), mat(_AT)


def winograd_conv3x3(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.conv2d(x, w, bias, padding=1)` (correlation, stride 1) by Winograd F(4x4, 3x3).

    x: [N, C, H, W] with H and W multiples of 4 (channels-last memory is fastest: the transforms
    move whole channel rows); w: [K, C, 3, 3]. Returns [N, K, H, W] in channels-last memory.
    """
    n, c, h, wd = x.shape
    k = w.shape[0]
    th, tw = h // TILE, wd // TILE
    tiles = n * th * tw
    bt, g, at = _matrices(x.dtype, x.device)

    # Input tiles: 6x6 windows every 4 pixels of the zero-padded NHWC image, gathered as
    # [6, 6, tiles * C] so each transform stage is one small matmul over whole channel rows.
    padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1))
    windows = padded.unfold(1, _A, TILE).unfold(2, _A, TILE)  # [N, th, tw, C, 6, 6], a view
    d = windows.permute(4, 5, 0, 1, 2, 3).reshape(_A, _A * tiles * c)
    v = torch.matmul(bt, (bt @ d).reshape(_A, _A, tiles * c))  # B^T d B, [6, 6, tiles * C]

    u = torch.einsum("ik,ockl,jl->ijco", g, w, g).reshape(_A * _A, c, k)  # G w G^T, [36, C, K]
    m = torch.bmm(v.reshape(_A * _A, tiles, c), u)  # [36, tiles, K]: the 36 products, summed over C

    y = torch.matmul(at, (at @ m.reshape(_A, _A * tiles * k)).reshape(TILE, _A, tiles * k))  # A^T m A
    y = y.reshape(TILE, TILE, n, th, tw, k).permute(2, 3, 0, 4, 1, 5).reshape(n, h, wd, k)
    if bias is not None:
        y = y + bias
    return y.permute(0, 3, 1, 2)
