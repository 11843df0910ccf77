"""The tile transforms of Winograd F(4x4, 3x3) as elementwise passes, and their adjoints, with autograd.

`input_tiles` maps a channels-last image to its transformed 6x6 tiles B^T d B; `output_tiles` maps the
transformed products back to 4x4 output tiles A^T m A. Both are linear, so each one's backward is the other
direction's adjoint (`*_adjoint`), and the adjoint's backward is the map itself: `LinearMap` (with
`transform_input`) and `OutputTiles` below chain them, which gives the double backward R1 and DigGAN take for free.

Why not matmuls: each transform stage multiplies by a 6x6 (or 4x6) constant, and a GEMM that small runs at a
few GFLOP/s, ten times slower than a memory pass over the same data on the CPUs we measured. Written as
sums and differences (Lavin & Gray 2016's matrices, common terms shared), each stage is a handful of passes
over whole channel rows.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

TILE = 4  # output tile m
SIDE = TILE + 2  # input tile a = m + 2 for a 3x3 kernel


def _taps(t: Tensor, dim: int, tiles: int) -> list[Tensor]:
    """The six taps of every window along `dim` of the 1-padded `t`, without padding it: window j covers
    positions 4j - 1 ... 4j + 4, so taps 1-4 lie inside `t` for every window, tap 0 for all but the first
    (whose tap 0 is the zero pad) and tap 5 for all but the last: views over windows 1.. and ..-2."""
    inner = [_every_tile(t, dim, k - 1, tiles) for k in range(1, 5)]
    return [_every_tile(t, dim, 3, tiles - 1), *inner, _every_tile(t, dim, 4, tiles - 1)]


def _bt(d: Sequence[Tensor], out: Sequence[Tensor], s1: Tensor, s2: Tensor, dim: int) -> None:
    """out_i = sum_k BT[i, k] d_k, BT = [[4,0,-5,0,1,0], [0,-4,-4,1,1,0], [0,4,-4,-1,1,0],
    [0,-2,-1,2,1,0], [0,2,-1,-2,1,0], [0,4,0,-5,0,1]], for taps `d` from `_taps` (d0 and d5 miss the
    first and last window along `dim`, whose tap is the zero pad: only out0 uses d0, only out5 d5)."""
    tiles = out[0].shape[dim]
    torch.add(d[4], d[2], alpha=-5, out=out[0]).narrow(dim, 1, tiles - 1).add_(d[0], alpha=4)
    torch.add(d[1], d[2], out=s1)
    torch.add(d[3], d[4], out=s2)
    torch.add(s2, s1, alpha=-4, out=out[1])
    torch.sub(d[1], d[2], out=s1)
    torch.sub(d[4], d[3], out=s2)
    torch.add(s2, s1, alpha=4, out=out[2])
    torch.sub(d[3], d[1], out=s1)
    torch.sub(d[4], d[2], out=s2)
    torch.add(s2, s1, alpha=2, out=out[3])
    torch.add(s2, s1, alpha=-2, out=out[4])
    torch.mul(d[3], -5, out=out[5]).add_(d[1], alpha=4).narrow(dim, 0, tiles - 1).add_(d[5])


def sums_and_differences(x: Sequence[Tensor], s: Sequence[Tensor]) -> Sequence[Tensor]:
    """s <- (x1 + x2, x1 - x2, x3 + x4, x3 - x4): the terms `_b` and `_at` share."""
    torch.add(x[1], x[2], out=s[0])
    torch.sub(x[1], x[2], out=s[1])
    torch.add(x[3], x[4], out=s[2])
    torch.sub(x[3], x[4], out=s[3])
    return s


def _b(g: Sequence[Tensor], out: Sequence[Tensor], s: Sequence[Tensor]) -> None:
    """out_k = sum_i BT[i, k] g_i for k < 5 (the adjoint of `_bt`; out_5 is g_5 itself, so no pass makes it);
    s: four scratch tensors."""
    p, q, r, t = sums_and_differences(g, s)
    torch.mul(g[0], 4, out=out[0])
    torch.sub(g[5], q, out=out[1]).mul_(4).add_(t, alpha=-2)  # -4q - 2t + 4 g5
    torch.add(r, p, alpha=4, out=out[2]).add_(g[0], alpha=5).neg_()  # -5 g0 - 4p - r
    torch.add(q, t, alpha=2, out=out[3]).add_(g[5], alpha=-5)
    torch.add(g[0], p, out=out[4]).add_(r)


def _at(m: Sequence[Tensor], out: Sequence[Tensor], s: Sequence[Tensor]) -> None:
    """out_p = sum_i AT[p, i] m_i, AT = [[1,1,1,1,1,0], [0,1,-1,2,-2,0], [0,1,1,4,4,0], [0,1,-1,8,-8,1]]."""
    a, b, c, d = sums_and_differences(m, s)
    torch.add(m[0], a, out=out[0]).add_(c)
    torch.add(b, d, alpha=2, out=out[1])
    torch.add(a, c, alpha=4, out=out[2])
    torch.add(b, d, alpha=8, out=out[3]).add_(m[5])


def _a(g: Sequence[Tensor], out: Sequence[Tensor], s1: Tensor, s2: Tensor) -> None:
    """out_i = sum_p AT[p, i] g_p (the adjoint of `_at`)."""
    out[0].copy_(g[0])
    torch.add(g[0], g[2], out=s1)
    torch.add(g[1], g[3], out=s2)
    torch.add(s1, s2, out=out[1])
    torch.sub(s1, s2, out=out[2])
    torch.add(g[0], g[2], alpha=4, out=s1)
    torch.add(g[1], g[3], alpha=4, out=s2).mul_(2)
    torch.add(s1, s2, out=out[3])
    torch.sub(s1, s2, out=out[4])
    out[5].copy_(g[3])


def _every_tile(t: Tensor, dim: int, offset: int, tiles: int) -> Tensor:
    """The view of `t` at positions offset, offset + 4, ... (`tiles` of them) along `dim`."""
    if tiles == 0:
        return t.narrow(dim, 0, 0)
    return t.narrow(dim, offset, TILE * (tiles - 1) + 1)[(slice(None),) * dim + (slice(None, None, TILE),)]


def _scratch(like: Tensor, n: int) -> list[Tensor]:
    return [torch.empty(like.shape, dtype=like.dtype, device=like.device) for _ in range(n)]


# Each map runs over a few images at a time, so that a chunk's passes stay in the core's caches while each pass is
# still long enough to hide its dispatch cost (a pass over 32k floats costs ~6 us, the dispatch ~2). Measured
# interleaved on the AMD EPYC (1 MB L2, 32 MB L3), one thread, 1/2/4/8 MB and unchunked: 8 MB was fastest or
# level for all four maps on every layer of the issue-15 network (e.g. 64 channels at 64x64, 16 images: 68 ms
# for the four against 81 with 2 MB chunks, 82 with 1 MB, 72 unchunked).
CHUNK_BYTES = 8 << 20


def _image_chunks(n: int, image: Tensor) -> list[slice]:
    per = max(1, CHUNK_BYTES // (image.numel() * image.element_size()))
    return [slice(i, min(i + per, n)) for i in range(0, n, per)]


def input_tiles(x: Tensor) -> Tensor:
    """x [N, H, W, C] (H, W multiples of 4) -> B^T d B of every 6x6 window of the 1-padded image, every 4
    pixels: [6, 6, N, H/4, W/4, C]."""
    x = x.contiguous()
    n, h, w, c = x.shape
    v = x.new_empty(SIDE, SIDE, n, h // TILE, w // TILE, c)
    for images in _image_chunks(n, x[0]):
        _input_tiles_into(x[images], v[:, :, images])
    return v


def _input_tiles_into(x: Tensor, v: Tensor) -> None:
    n, h, w, c = x.shape
    th, tw = h // TILE, w // TILE
    rows = x.new_empty(SIDE, n, th, w, c)  # the transform down each column of windows
    _bt(_taps(x, 1, th), rows, *_scratch(rows[0], 2), dim=1)
    scratch = _scratch(v[0, 0], 2)
    for i in range(SIDE):  # then along each row
        _bt(_taps(rows[i], 2, tw), v[i], *scratch, dim=2)


def _scatter_b(g: Sequence[Tensor], target: Tensor, dim: int, tiles: int) -> None:
    """target (fresh) <- the adjoint of one `_bt` stage along `dim`: taps 1-4 of the windows cover every
    position once and are written; taps 0 and 5 overlap the neighbouring windows' and are added (those of the
    first and last window fall on the zero pad and are dropped)."""
    (head,) = _scratch(g[0], 1)
    inner = _taps(target, dim, tiles)[1:5]
    _b(g, [head, *inner], _scratch(g[0], 4))
    _every_tile(target, dim, 3, tiles - 1).add_(head.narrow(dim, 1, tiles - 1))
    _every_tile(target, dim, 4, tiles - 1).add_(g[5].narrow(dim, 0, tiles - 1))  # tap 5's adjoint is g_5


def input_tiles_adjoint(v: Tensor, h: int, w: int) -> Tensor:
    """The adjoint of `input_tiles`: [6, 6, N, H/4, W/4, C] -> [N, H, W, C]."""
    v = v.contiguous()
    n, c = v.shape[2], v.shape[5]
    x = v.new_empty(n, h, w, c)
    for images in _image_chunks(n, x[0]):
        _input_tiles_adjoint_into(v[:, :, images], x[images])
    return x


def _input_tiles_adjoint_into(v: Tensor, x: Tensor) -> None:
    _, _, n, th, tw, c = v.shape
    rows = v.new_empty(SIDE, n, th, x.shape[2], c)
    for i in range(SIDE):
        _scatter_b(v[i], rows[i], 2, tw)
    _scatter_b(rows, x, 1, th)


def output_tiles(m: Tensor, bias: Tensor | None = None) -> Tensor:
    """[6, 6, N, H/4, W/4, K] -> A^T m A placed as 4x4 output tiles, plus bias [K] if given: [N, H, W, K]."""
    _, _, n, th, tw, k = m.shape
    y = m.new_empty(n, th, TILE, tw, TILE, k)
    for images in _image_chunks(n, y[0]):
        _output_tiles_into(m[:, :, images], y[images], bias)
    return y.view(n, th * TILE, tw * TILE, k)


def _output_tiles_into(m: Tensor, y: Tensor, bias: Tensor | None) -> None:
    cols = m.new_empty(SIDE, TILE, *m.shape[2:])
    scratch = _scratch(m[0, 0], 4)
    for i in range(SIDE):
        _at(m[i], cols[i], scratch)
    if bias is not None:
        # Row 1 of the half-transformed tiles reaches every output with weight 1 (column 1 of A^T is all ones):
        # a bias there is a bias on the output, for a pass over 4/36 of m instead of one over the output.
        cols[1] += bias
    for q in range(TILE):
        _at(cols[:, q], [y[:, :, p, :, q] for p in range(TILE)], scratch)


def output_tiles_adjoint(y: Tensor) -> Tensor:
    """The adjoint of `output_tiles`: [N, H, W, K] -> [6, 6, N, H/4, W/4, K]."""
    n, h, w, k = y.shape
    tiles = y.contiguous().view(n, h // TILE, TILE, w // TILE, TILE, k)
    m = y.new_empty(SIDE, SIDE, n, h // TILE, w // TILE, k)
    for images in _image_chunks(n, tiles[0]):
        _output_tiles_adjoint_into(tiles[images], m[:, :, images])
    return m


def _output_tiles_adjoint_into(tiles: Tensor, m: Tensor) -> None:
    cols = tiles.new_empty(SIDE, TILE, *m.shape[2:])
    scratch = _scratch(cols[0, 0], 2)
    for q in range(TILE):
        _a([tiles[:, :, p, :, q] for p in range(TILE)], cols[:, q], *scratch)
    for i in range(SIDE):
        _a(cols[i], m[i], *scratch)


LinearFn = Callable[[Tensor], Tensor]


class LinearMap(torch.autograd.Function):
    """A linear map without parameters, `maps = (f, f_adjoint)`: its backward applies the adjoint through this
    same Function with the pair swapped, so it is differentiable to any order with no graph of small ops."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, maps: tuple[LinearFn, LinearFn]) -> Tensor:
        ctx.maps = maps
        return maps[0](x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        f, f_adjoint = ctx.maps
        return LinearMap.apply(grad, (f_adjoint, f)), None


def transform_input(x: Tensor) -> Tensor:
    """`input_tiles` with its adjoint as backward (and so on, to any order)."""
    h, w = x.shape[1:3]
    return LinearMap.apply(x, (input_tiles, functools.partial(input_tiles_adjoint, h=h, w=w)))


class OutputTiles(torch.autograd.Function):
    """`output_tiles` with its adjoint as backward (and so on, to any order). The bias is taken here rather than
    added to m beforehand: an in-place add on a slice of m makes autograd copy m's whole gradient twice."""

    @staticmethod
    def forward(ctx: Any, m: Tensor, bias: Tensor | None = None) -> Tensor:
        return output_tiles(m.contiguous(), bias)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor | None]:
        grad_m = OutputTilesAdjoint.apply(grad)
        # The sum of each tile's output gradient is grad_m's component (1, 1): 1/16 of a pass over grad.
        grad_bias = grad_m[1, 1].sum((0, 1, 2)) if ctx.needs_input_grad[1] else None
        return grad_m, grad_bias


class OutputTilesAdjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, y: Tensor) -> Tensor:
        return output_tiles_adjoint(y)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return OutputTiles.apply(grad, None)
