"""Strided convolutions whose weight gradient is one matrix product over the input's windows, for CPU training.

Why: oneDNN's weight gradient of a stride-2 convolution runs at 24-50 GFLOP/s on the 2-core AMD EPYC we measured,
against 60-90 for the same layer's forward and input gradient (bench/strided_layers.py, docs/speed.md). Written as
im2col (a copy of every kxk window, a few images at a time) and one `mm` with the output gradient, the same sum
runs at 55-80 GFLOP/s. StyleGAN2's resampling layers (D's down-convolutions, G's transposed up-convolutions) are
about a quarter of a training minibatch on CPU, and their weight gradient a third of that.

The forward passes and the input gradients stay oneDNN's. `conv2d` and `conv_transpose2d` are each other's
input gradient, and the weight gradient (`_WindowWeightGrad`) has both as its backward, so gradients of any
order (R1's and DigGAN's double backward through D) run through the same three functions. Only padding 0, no
groups: the two layer kinds above. Results differ from oneDNN's by float rounding (the sum's order); they
are deterministic for a thread count.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .winograd_tiles import CHUNK_BYTES

# Measured per layer (bench/strided_layers.py, docs/speed.md): 0.73-0.81 of oneDNN's forward + backward time
# with 64 or more channels in and out, 0.41-0.42 for low-shot-256's largest layers; 0.90-0.92 for 64 <-> 128 at
# 8x8 to 16x16; 1.02-1.14 with 16-32 channels (cpu-tiny's), where oneDNN's own weight gradient is not the slow
# part. MIN_WORK (images x in x out channels x the low-resolution side's pixels, per call) also leaves the CPU
# presets' layers on oneDNN (cpu-faces' and the quality protocol's largest call is 2^24), so their records stay
# comparable; it costs the issue-15 network its two smallest resampling calls (2^23, 2^24; ~0.4% of a minibatch).
MIN_CHANNELS = 64
MIN_WORK = 1 << 25

_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("window_matmul_enabled", default=False)


@contextlib.contextmanager
def use_window_matmul(enabled: bool = True) -> Iterator[None]:
    """Inside this block, eligible strided convolutions take their weight gradient as a matmul (the trainer's
    `perf.window_matmul`)."""
    token = _enabled.set(enabled)
    try:
        yield
    finally:
        _enabled.reset(token)


def eligible(x: Tensor, w: Tensor, stride: int, padding: Any, groups: int, transpose: bool = False) -> bool:
    """True inside `use_window_matmul` for a float32 CPU convolution (or, `transpose`, transposed convolution) with
    stride > 1, no padding, no groups, MIN_CHANNELS in and out and MIN_WORK in the call, outside autocast."""
    if not (_enabled.get() and stride > 1 and groups == 1 and _is_zero(padding) and min(w.shape[:2]) >= MIN_CHANNELS):
        return False
    n, _, h, wd = x.shape
    if not transpose:  # the output's pixels: x is the high-resolution side
        h, wd = (h - w.shape[2]) // stride + 1, (wd - w.shape[3]) // stride + 1
    return (
        n * w.shape[0] * w.shape[1] * h * wd >= MIN_WORK
        and x.device.type == "cpu" and x.dtype == torch.float32 and w.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
    )


def _is_zero(padding: Any) -> bool:
    return all(p == 0 for p in padding) if isinstance(padding, (list, tuple)) else padding == 0


def conv2d(x: Tensor, w: Tensor, bias: Tensor | None, stride: int) -> Tensor:
    """`F.conv2d(x, w, bias, stride=stride)`; x [N, C, H, W], w [K, C, kh, kw]."""
    return _Conv.apply(x, w, bias, stride)


def conv_transpose2d(x: Tensor, w: Tensor, stride: int, output_size: tuple[int, int] | None = None) -> Tensor:
    """`F.conv_transpose2d(x, w, stride=stride)` (optionally to `output_size`); x [N, C, H, W], w [C, K, kh, kw]."""
    return _ConvTranspose.apply(x, w, stride, output_size)


def window_weight_grad(x: Tensor, grad: Tensor, stride: int, kernel: tuple[int, int]) -> Tensor:
    """The weight gradient of `conv2d(x, w, stride=stride)` for output gradient `grad`: [K, C, kh, kw] with
    dW[k, c, i, j] = sum over images and output pixels (p, q) of grad[n, k, p, q] x[n, c, s p + i, s q + j]."""
    return _WindowWeightGrad.apply(x, grad, stride, kernel)


def output_padding(size: Sequence[int], small: Sequence[int], stride: Sequence[int] | int, kernel: Sequence[int],
                   padding: Sequence[int] | int = 0) -> list[int]:
    """The output_padding that makes a transposed conv of `small` (with this stride, kernel and padding) exactly
    `size` again: the spatial size of the conv's input that `small` came from."""
    s = [stride] * 2 if isinstance(stride, int) else stride
    p = [padding] * 2 if isinstance(padding, int) else padding
    return [size[i] - ((small[i] - 1) * s[i] - 2 * p[i] + kernel[i]) for i in range(2)]


class _Conv(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, bias: Tensor | None, stride: int) -> Tensor:
        ctx.save_for_backward(x, w)
        ctx.stride, ctx.has_bias = stride, bias is not None
        return F.conv2d(x, w, bias, stride=stride)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, w = ctx.saved_tensors
        s = ctx.stride
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = conv_transpose2d(grad, w, s, tuple(x.shape[-2:]))
        if ctx.needs_input_grad[1]:
            gw = window_weight_grad(x, grad, s, tuple(w.shape[-2:]))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = grad.sum((0, 2, 3))
        return gx, gw, gb, None


class _ConvTranspose(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, stride: int, output_size: tuple[int, int] | None) -> Tensor:
        ctx.save_for_backward(x, w)
        ctx.stride = stride
        pad = [0, 0] if output_size is None else output_padding(output_size, x.shape[-2:], stride, w.shape[-2:])
        return F.conv_transpose2d(x, w, stride=stride, output_padding=pad)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, w = ctx.saved_tensors
        s = ctx.stride
        gx = gw = None
        if ctx.needs_input_grad[0]:
            gx = conv2d(grad, w, None, s)
        if ctx.needs_input_grad[1]:
            # y = conv_transpose(x, w) is the input gradient of a conv of y's shape: its weight gradient is
            # that conv's, with x in the output gradient's place. [C, K, kh, kw], w's own layout.
            gw = window_weight_grad(grad, x, s, tuple(w.shape[-2:]))
        return gx, gw, None, None


class _WindowWeightGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, grad: Tensor, stride: int, kernel: tuple[int, int]) -> Tensor:
        ctx.save_for_backward(x, grad)
        ctx.stride = stride
        return _window_matmul(x, grad, stride, kernel)

    @staticmethod
    def backward(ctx: Any, gw: Tensor) -> tuple[Tensor | None, ...]:
        # dW is bilinear in (x, grad): its adjoint in x is the input gradient of conv(x, gw), in grad the conv.
        x, grad = ctx.saved_tensors
        s = ctx.stride
        gx = ggrad = None
        if ctx.needs_input_grad[0]:
            gx = conv_transpose2d(grad, gw, s, tuple(x.shape[-2:]))
        if ctx.needs_input_grad[1]:
            ggrad = conv2d(x, gw, None, s)
        return gx, ggrad, None, None


def _window_matmul(x: Tensor, grad: Tensor, stride: int, kernel: tuple[int, int]) -> Tensor:
    """im2col of x's windows (channels-last rows, a few images at a time so each copy stays in cache) times the
    output gradient, accumulated over the chunks: [K, kh, kw, C], returned as [K, C, kh, kw] in channels-last
    strides (the weights' layout in training)."""
    n, c = x.shape[:2]
    k = grad.shape[1]
    oh, ow = grad.shape[-2:]
    kh, kw = kernel
    xh = x.permute(0, 2, 3, 1).contiguous()  # NHWC; a view when x is channels-last
    gh = grad.permute(0, 2, 3, 1).contiguous()
    sn, sh, sw, sc = xh.stride()
    windows = xh.as_strided((n, oh, ow, kh, kw, c), (sn, stride * sh, stride * sw, sh, sw, sc))
    per_image = oh * ow * kh * kw * c * x.element_size()
    step = max(1, CHUNK_BYTES // per_image)
    out = x.new_empty(k, kh * kw * c)
    for i in range(0, n, step):
        cols = windows[i : i + step].reshape(-1, kh * kw * c)
        rows = gh[i : i + step].reshape(-1, k).t()
        if i == 0:
            torch.mm(rows, cols, out=out)
        else:
            out.addmm_(rows, cols)
    return out.view(k, kh, kw, c).permute(0, 3, 1, 2)
