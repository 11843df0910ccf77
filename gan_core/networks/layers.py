"""Pure-PyTorch building blocks of StyleGAN2 (NVlabs stylegan2-ada-pytorch semantics).

Everything here is written with ordinary differentiable torch ops, so:
- the same code runs on CPU and CUDA (no custom extensions to compile);
- second-order gradients (R1, DigGAN, path length) work out of the box.

The functions mirror NVlabs' `torch_utils/ops` reference implementations
(`_upfirdn2d_ref`, `conv2d_resample`, `_bias_act_ref`) and the layers mirror
`training/networks.py`, including parameter/buffer names and the equalized
learning-rate convention (weights stored as N(0, 1) / lr_mult, scaled by
`weight_gain` at run time), so NVlabs weights reproduce NVlabs outputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from . import strided_conv, winograd

# Leaky ReLU slope and the gain that keeps activations at unit variance (He init);
# NVlabs' `bias_act.activation_funcs`.
LRELU_ALPHA = 0.2
ACT_GAIN = {"linear": 1.0, "lrelu": math.sqrt(2.0)}

Padding = int | Sequence[int]


# ---------------------------------------------------------------------------
# Elementwise helpers
# ---------------------------------------------------------------------------


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale each row to unit root-mean-square (the mapping network's input normalisation)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    act: str = "linear",
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """Add bias (along dim 1), apply `act`, multiply by `gain`, clamp to +-`clamp`.

    Same order of operations as NVlabs' `_bias_act_ref`. `gain=None` means the
    activation's default gain (sqrt(2) for lrelu).
    """
    if act not in ACT_GAIN:
        raise ValueError(f"unsupported activation {act!r}; use one of {sorted(ACT_GAIN)}")
    gain = ACT_GAIN[act] if gain is None else float(gain)
    if b is not None:
        x = x + b.reshape([-1 if i == 1 else 1 for i in range(x.ndim)])
    if act == "lrelu":
        x = F.leaky_relu(x, LRELU_ALPHA)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        # hardtanh == clamp, but its backward is one fused kernel instead of four
        # (ge, le, and, where): ~2x cheaper for the same (double-differentiable) result.
        x = F.hardtanh(x, -clamp, clamp)
    return x


# ---------------------------------------------------------------------------
# FIR resampling (upfirdn2d)
# ---------------------------------------------------------------------------


def setup_filter(f: Sequence[float] | torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """A 2-D float32 FIR filter from 1-D taps (outer product), normalised to unit DC gain.

    NVlabs stores 4-tap filters as 2-D [4, 4] tensors (separable only from 8 taps),
    so the `resample_filter` buffers here have the same shape as theirs.
    """
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim == 1:
        f = torch.outer(f, f)
    if normalize:
        f = f / f.sum()
    return f


def _parse_padding(padding: Padding) -> tuple[int, int, int, int]:
    """-> (padx0, padx1, pady0, pady1), NVlabs' convention."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        return padding[0], padding[0], padding[1], padding[1]
    if len(padding) != 4:
        raise ValueError(f"padding must have 1, 2 or 4 entries, got {padding}")
    return padding[0], padding[1], padding[2], padding[3]


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample (zero insertion), pad, FIR-filter, downsample each channel of `x` [N, C, H, W].

    A port of NVlabs' `_upfirdn2d_ref`: pad, then a depthwise conv2d with the
    flipped filter (conv2d is correlation; flipping makes it a true convolution).
    One deviation, numerically identical: downsampling is the conv's stride
    instead of computing every pixel and throwing 3/4 of them away.
    Negative padding crops.
    """
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    n, c, h, w = x.shape
    padx0, padx1, pady0, pady1 = _parse_padding(padding)

    # Upsample by inserting up-1 zeros after each pixel (a pad of a reshaped view; no loops).
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)

    # Pad (positive) or crop (negative). Symmetric zero padding is left to the conv below,
    # which pads internally: no padded copy of x to fill and write (nor its backward).
    conv_pad = (0, 0)
    if padx0 == padx1 >= 0 and pady0 == pady1 >= 0:
        conv_pad = (pady0, padx0)
    else:
        if max(padx0, padx1, pady0, pady1) > 0:
            x = F.pad(x, [max(padx0, 0), max(padx1, 0), max(pady0, 0), max(pady1, 0)])
        if min(padx0, padx1, pady0, pady1) < 0:
            x = x[:, :, max(-pady0, 0) : x.shape[2] - max(-pady1, 0), max(-padx0, 0) : x.shape[3] - max(-padx1, 0)]

    # Filter: one depthwise conv; gain applied to the (tiny) filter, not the image.
    f = f * (gain ** (f.ndim / 2))
    f = f.to(device=x.device, dtype=x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 1:  # separable taps: horizontal pass then vertical pass
        x = depthwise_fir(x, f.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), (1, down), (0, conv_pad[1]))
        x = depthwise_fir(x, f.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), (down, 1), (conv_pad[0], 0))
    else:
        x = depthwise_fir(x, f[None, None].expand(c, 1, -1, -1), (down, down), conv_pad)
    return x


def depthwise_fir(x: torch.Tensor, w: torch.Tensor, stride: tuple[int, int], padding: tuple[int, int]) -> torch.Tensor:
    """Depthwise conv2d of `x` [N, C, H, W] with a constant filter `w` [C, 1, kh, kw] (groups = C).

    When a gradient may be taken, it runs as a pair of autograd functions (the filter and its
    transpose, each the other's backward), so gradients of any order cost first-order grouped convs:
    torch's own double backward of a grouped conv loops over the C groups in Python-level slices
    (R1/DigGAN through D's downsampling filters: ~3x the time of the pass itself on CPU).
    """
    if torch.is_grad_enabled() and x.requires_grad:
        return _DepthwiseFIR.apply(x, w, stride, padding)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=w.shape[0])


class _DepthwiseFIR(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, stride, padding):  # type: ignore[override]
        ctx.save_for_backward(w)
        ctx.stride, ctx.padding, ctx.in_hw = stride, padding, tuple(x.shape[-2:])
        return F.conv2d(x, w, stride=stride, padding=padding, groups=w.shape[0])

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (w,) = ctx.saved_tensors
        return _DepthwiseFIRTransposed.apply(grad, w, ctx.stride, ctx.padding, ctx.in_hw), None, None, None


class _DepthwiseFIRTransposed(torch.autograd.Function):
    """The adjoint of `_DepthwiseFIR` (its input gradient), shaped back to the filter's input size."""

    @staticmethod
    def forward(ctx, y, w, stride, padding, out_hw):  # type: ignore[override]
        ctx.save_for_backward(w)
        ctx.stride, ctx.padding = stride, padding
        extra = strided_conv.output_padding(out_hw, y.shape[-2:], stride, w.shape[-2:], padding)
        return F.conv_transpose2d(y, w, stride=stride, padding=padding, output_padding=extra, groups=w.shape[0])

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (w,) = ctx.saved_tensors
        return _DepthwiseFIR.apply(grad, w, ctx.stride, ctx.padding), None, None, None, None


def _filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    if f is None:
        return 1, 1
    return int(f.shape[-1]), int(f.shape[0])


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """FIR-filtered 2x (or `up`x) upsampling; output is exactly `up` times larger."""
    fw, fh = _filter_size(f)
    p = [(fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=p, gain=up * up)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2) -> torch.Tensor:
    """FIR-filtered 2x (or `down`x) downsampling; output is exactly `down` times smaller."""
    fw, fh = _filter_size(f)
    p = [(fw - down + 1) // 2, (fw - down) // 2, (fh - down + 1) // 2, (fh - down) // 2]
    return upfirdn2d(x, f, down=down, padding=p)


# ---------------------------------------------------------------------------
# Convolution with optional up/downsampling (NVlabs conv2d_resample)
# ---------------------------------------------------------------------------


def _conv2d_wrapper(
    x: torch.Tensor,
    w: torch.Tensor,
    stride: int = 1,
    padding: Sequence[int] | int = 0,
    groups: int = 1,
    transpose: bool = False,
    flip_weight: bool = True,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    # conv2d computes correlation; flip_weight=False asks for a true convolution.
    if not flip_weight:
        w = w.flip([2, 3])
    if strided_conv.eligible(x, w, stride, padding, groups, transpose):
        if transpose:
            return _add_bias(strided_conv.conv_transpose2d(x, w, stride), bias)
        return strided_conv.conv2d(x, w, bias, stride)
    if transpose:
        return F.conv_transpose2d(x, w, bias, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, bias, stride=stride, padding=padding, groups=groups)


def _add_bias(x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return x if bias is None else x + bias.reshape(1, -1, 1, 1)


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    groups: int = 1,
    flip_weight: bool = True,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """2-D convolution with FIR-filtered up/downsampling, a port of NVlabs' `conv2d_resample`.

    Args:
        x: input [N, C_in, H, W].
        w: weight [C_out, C_in // groups, kh, kw].
        f: low-pass filter from `setup_filter` (needed when up or down > 1).
        up, down: integer resampling factors.
        padding: padding with respect to the upsampled image.
        groups: grouped convolution (the fused modulated conv uses groups=batch).
        flip_weight: False = convolution, True = correlation (like F.conv2d).
        bias: [C_out] added to the output; inside the last conv when the last op is one
            (one fused kernel instead of a separate pass over the output).
    """
    out_channels, in_channels_per_group, kh, kw = w.shape
    fw, fh = _filter_size(f)
    px0, px1, py0, py1 = _parse_padding(padding)

    # Adjust padding to account for up/downsampling.
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2

    # 1x1 conv with downsampling: downsample first (4x fewer pixels to convolve).
    if kw == 1 and kh == 1 and (down > 1 and up == 1):
        x = upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1])
        return _conv2d_wrapper(x, w, groups=groups, flip_weight=flip_weight, bias=bias)

    # 1x1 conv with upsampling: convolve first, then upsample.
    if kw == 1 and kh == 1 and (up > 1 and down == 1):
        x = _conv2d_wrapper(x, w, groups=groups, flip_weight=flip_weight)
        return _add_bias(upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up**2), bias)

    # Downsampling only: filter, then strided conv.
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=[px0, px1, py0, py1])
        return _conv2d_wrapper(x, w, stride=down, groups=groups, flip_weight=flip_weight, bias=bias)

    # Upsampling: transposed strided conv, then filter.
    if up > 1:
        if groups == 1:
            w = w.transpose(0, 1)
        else:
            w = w.reshape(groups, out_channels // groups, in_channels_per_group, kh, kw)
            w = w.transpose(1, 2)
            w = w.reshape(groups * in_channels_per_group, out_channels // groups, kh, kw)
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        x = _conv2d_wrapper(
            x, w, stride=up, padding=[pyt, pxt], groups=groups, transpose=True, flip_weight=not flip_weight
        )
        x = upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up**2)
        if down > 1:
            x = upfirdn2d(x, f, down=down)
        return _add_bias(x, bias)

    # No resampling, symmetric padding: plain conv2d.
    if up == 1 and down == 1 and px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        if px0 == py0 and winograd.eligible(x, w, px0, groups):
            return winograd.winograd_conv3x3(x, w if flip_weight else w.flip([2, 3]), bias)
        return _conv2d_wrapper(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight, bias=bias)

    # Generic fallback.
    x = upfirdn2d(x, f if up > 1 else None, up=up, padding=[px0, px1, py0, py1], gain=up**2)
    x = _conv2d_wrapper(x, w, groups=groups, flip_weight=flip_weight, bias=bias if down == 1 else None)
    if down > 1:
        x = _add_bias(upfirdn2d(x, f, down=down), bias)
    return x


# ---------------------------------------------------------------------------
# Modulated convolution
# ---------------------------------------------------------------------------


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused_modconv: bool = True,
    bias: torch.Tensor | None = None,
    gain: float = 1.0,
) -> torch.Tensor:
    """StyleGAN2 modulated (and optionally demodulated) convolution: `gain * (conv + noise + bias)`.

    Args:
        x: activations [N, C_in, H, W].
        weight: shared weight [C_out, C_in, kh, kw] (no equalized-lr gain: demodulation normalises it).
        styles: per-sample input-channel scales [N, C_in].
        noise: added after the conv (before bias), broadcastable to the output.
        up: upsampling factor; padding: conv padding w.r.t. the upsampled image.
        resample_filter: FIR filter for upsampling.
        demodulate: normalise each output channel's per-sample weight to unit L2 norm.
        flip_weight: False = convolution, True = correlation.
        fused_modconv: True = build per-sample weights and run one grouped conv
            (groups=N); False = scale activations before/after one shared-weight
            conv. Mathematically identical; the faster one depends on the device.
        bias: [C_out] added after the noise (NVlabs adds it in `bias_act`).
        gain: multiplies the result. The callers pass the activation gain here: leaky
            ReLU is positively homogeneous, so `lrelu(g * y) = g * lrelu(y)` and the gain rides
            on the small per-sample coefficients instead of costing a pass over the activations.
    A 1x1 kernel without resampling (ToRGB) is one batched matmul with per-sample weights.
    """
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape

    # Demodulation coefficients 1 / ||w * s||_2 per sample and output channel.
    # sum_{i,k} (W[o,i,k] s[n,i])^2 = sum_i s[n,i]^2 sum_k W[o,i,k]^2: one small matmul
    # instead of materialising the [N, O, I, k, k] per-sample weights (NVlabs does the latter).
    dcoefs = None
    if demodulate:
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [N, O]
    out_scale = dcoefs * gain if dcoefs is not None else (None if gain == 1 else gain)
    gbias = None if bias is None else (bias * gain if gain != 1 else bias).to(x.dtype)
    if noise is not None and gain != 1:
        noise = noise * gain  # [N, 1, H, W] or [H, W]: small

    if kh == 1 and kw == 1 and up == 1 and padding == 0:
        # Per-sample weights [N, O, I] (tiny), then one batched matmul over the pixels.
        w = weight.reshape(out_channels, in_channels).unsqueeze(0) * styles.reshape(batch_size, 1, -1)
        if out_scale is not None:
            w = w * (out_scale.reshape(batch_size, -1, 1) if torch.is_tensor(out_scale) else out_scale)
        x = _batched_1x1(x, w.to(x.dtype), gbias)
        return x if noise is None else x + noise.to(x.dtype)

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, padding=padding, flip_weight=flip_weight,
                            bias=gbias if out_scale is None else None)
        if torch.is_tensor(out_scale):
            scale = out_scale.to(x.dtype).reshape(batch_size, -1, 1, 1)
            # One pass for scale and bias: bias + x * scale.
            x = x * scale if gbias is None else torch.addcmul(gbias.reshape(1, -1, 1, 1), x, scale)
        elif out_scale is not None:
            x = x * out_scale if gbias is None else torch.add(gbias.reshape(1, -1, 1, 1), x, alpha=out_scale)
        if noise is not None:
            x = x + noise.to(x.dtype)
        return x

    # Fused: per-sample weights [N, O, I, k, k], batch folded into channels, one grouped conv.
    w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)
    if out_scale is not None:
        w = w * (out_scale.reshape(batch_size, -1, 1, 1, 1) if torch.is_tensor(out_scale) else out_scale)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = conv2d_resample(
        x, w.to(x.dtype), f=resample_filter, up=up, padding=padding, groups=batch_size, flip_weight=flip_weight,
        bias=None if gbias is None else gbias.repeat(batch_size),
    )
    x = x.reshape(batch_size, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x


def _batched_1x1(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Per-sample 1x1 conv: x [N, I, H, W], w [N, O, I] -> [N, O, H, W] as one (b)addbmm.

    Pixels are read in x's own memory order (NCHW or channels-last) so no copy is made,
    and the output comes back in the same format.
    """
    n, c, h, wd = x.shape
    o = w.shape[1]
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        xv = x.permute(0, 2, 3, 1).reshape(n, h * wd, c)  # a view: pixels x channels
        wt = w.transpose(1, 2)
        y = torch.bmm(xv, wt) if bias is None else torch.baddbmm(bias.reshape(1, 1, o), xv, wt)
        return y.reshape(n, h, wd, o).permute(0, 3, 1, 2)
    xv = x.reshape(n, c, h * wd)
    y = torch.bmm(w, xv) if bias is None else torch.baddbmm(bias.reshape(1, o, 1), w, xv)
    return y.reshape(n, o, h, wd)


def act_clamp(x: torch.Tensor, act: str = "linear", clamp: float | None = None) -> torch.Tensor:
    """`act` then clamp to +-`clamp`: `bias_act` for callers that folded bias and gain upstream."""
    if act == "lrelu":
        x = F.leaky_relu(x, LRELU_ALPHA)
    elif act != "linear":
        raise ValueError(f"unsupported activation {act!r}; use one of {sorted(ACT_GAIN)}")
    if clamp is not None and clamp >= 0:
        x = F.hardtanh(x, -clamp, clamp)
    return x


# ---------------------------------------------------------------------------
# Layers with equalized learning rate
# ---------------------------------------------------------------------------


class FullyConnectedLayer(torch.nn.Module):
    """Dense layer with equalized learning rate (NVlabs `FullyConnectedLayer`).

    Args:
        in_features: input size.
        out_features: output size.
        bias: learn an additive bias.
        activation: "linear" or "lrelu".
        lr_multiplier: learning-rate multiplier; the weight is stored as randn / lr_multiplier
            and multiplied by lr_multiplier / sqrt(in_features) at run time.
        bias_init: initial bias value (1 for style affines, so styles start near 1).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = torch.nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class Conv2dLayer(torch.nn.Module):
    """Conv layer with equalized learning rate and FIR up/downsampling (NVlabs `Conv2dLayer`).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel size (padding = kernel_size // 2).
        bias: learn an additive bias.
        activation: "linear" or "lrelu".
        up, down: integer resampling factors.
        resample_filter: FIR taps for resampling; stored as the `resample_filter` buffer.
        conv_clamp: clamp outputs to +-conv_clamp (None = no clamping).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        down: int = 1,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = ACT_GAIN[activation]
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        # NVlabs: clamp(act(conv(x, w * wg) + b) * g). Both activations are positively homogeneous,
        # so the gain g folds into the (small) weight and bias and the bias into the conv itself:
        # the same function with two fewer passes over the activations (forward and backward).
        g = self.act_gain * gain
        w = self.weight * (self.weight_gain * g)
        b = None if self.bias is None else (self.bias * g if g != 1 else self.bias).to(x.dtype)
        x = conv2d_resample(
            x,
            w.to(x.dtype),
            f=self.resample_filter,
            up=self.up,
            down=self.down,
            padding=self.padding,
            flip_weight=(self.up == 1),  # NVlabs: correlation unless upsampling (slightly faster there)
            bias=b,
        )
        return act_clamp(x, self.activation, self.conv_clamp * gain if self.conv_clamp is not None else None)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"kernel={self.weight.shape[-1]}, up={self.up}, down={self.down}, activation={self.activation}"
        )
