"""StyleGAN2 generator and residual discriminator (unconditional, fp32, pure PyTorch).

Architecture, parameter and buffer names follow NVlabs stylegan2-ada-pytorch
`training/networks.py` (skip generator, resnet discriminator, c_dim=0): the
state_dict keys of an unconditional NVlabs G/D are exactly these, and outputs
match NVlabs' reference (non-CUDA) ops to float rounding. Modules are built in
NVlabs' order, so a given `torch.manual_seed` also yields NVlabs' initial weights.
Deviations: fp32 only (no num_fp16_res), no conditioning (`c` is accepted and ignored), no freeze_layers,
and MinibatchStdLayer accepts any batch size (see its docstring).

    G = Generator(cfg)          # cfg: gan_core.config.NetworkConfig
    ws = G.mapping(z, truncation_psi=1.0, update_w_avg=False)   # [N, num_ws, w_dim]
    img = G.synthesis(ws, noise_mode="random")                  # [N, C, R, R], ~[-1, 1]
    logits = Discriminator(cfg)(img)                            # [N, 1]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from gan_core.config import NetworkConfig
from gan_core.networks.layers import (
    Conv2dLayer,
    FullyConnectedLayer,
    act_clamp,
    modulated_conv2d,
    normalize_2nd_moment,
    setup_filter,
    upsample2d,
)

NOISE_MODES = ("random", "const", "none")
SQRT_HALF = math.sqrt(0.5)


def _check_resolution(res: int) -> int:
    if res < 4 or res & (res - 1):
        raise ValueError(f"resolution must be a power of two >= 4 (32..1024 for training), got {res}")
    return int(math.log2(res))


def _channels(channel_base: int, channel_max: int, res: int) -> int:
    ch = min(channel_base // res, channel_max)
    if ch < 1:
        raise ValueError(
            f"channel_base={channel_base} gives 0 channels at resolution {res}; "
            f"use channel_base >= the resolution (channels = min(channel_base // res, channel_max))"
        )
    return ch


# ---------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------


class MappingNetwork(torch.nn.Module):
    """z -> w MLP: normalise z, `num_layers` lrelu FC layers, broadcast to num_ws copies.

    Args:
        z_dim: input latent size.
        w_dim: intermediate latent size (also the width of every layer).
        num_ws: number of w copies to output (one per synthesis layer + final ToRGB).
        num_layers: depth of the MLP (layers fc0..fc{num_layers-1}).
        lr_multiplier: learning-rate multiplier of every layer (NVlabs: 0.01).
        w_avg_beta: decay of the running mean of w used for truncation.
    """

    def __init__(
        self,
        z_dim: int,
        w_dim: int,
        num_ws: int,
        num_layers: int = 8,
        lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.995,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"mapping_layers must be >= 1, got {num_layers}")
        self.z_dim = z_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        features = [z_dim] + [w_dim] * num_layers
        for idx in range(num_layers):
            layer = FullyConnectedLayer(
                features[idx], features[idx + 1], activation="lrelu", lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{idx}", layer)
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: torch.Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_w_avg: bool = False,
    ) -> torch.Tensor:
        """z [N, z_dim] -> ws [N, num_ws, w_dim].

        update_w_avg: fold this batch's mean w into `w_avg` (the trainer does this
            for the training G; NVlabs does it whenever the module is in train mode).
        truncation_psi: ws = w_avg + psi * (w - w_avg); psi=0 gives w_avg exactly.
        truncation_cutoff: truncate only the first `cutoff` ws (None = all).
        """
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape [N, {self.z_dim}], got {list(z.shape)}")
        x = normalize_2nd_moment(z.to(torch.float32))
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)

        if update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

        # Broadcast: every synthesis layer gets its own (here identical) w, so style mixing
        # can later overwrite a slice.
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])

        if truncation_psi != 1:
            if truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                head = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
                x = torch.cat([head, x[:, truncation_cutoff:]], dim=1)
        return x


class SynthesisLayer(torch.nn.Module):
    """Modulated 3x3 conv + noise + bias + lrelu (NVlabs `SynthesisLayer`).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        w_dim: w size (input of the style affine).
        resolution: output resolution (size of `noise_const`).
        kernel_size: conv kernel size.
        up: 1, or 2 for the first conv of a block (FIR-filtered transposed conv).
        use_noise: add per-pixel noise scaled by the learned `noise_strength`.
        resample_filter: FIR taps for upsampling.
        conv_clamp: clamp activations to +-conv_clamp (None = off).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = math.sqrt(2.0)
        # Creation order matches NVlabs, so the same seed gives the same weights.
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: str = "random",
        fused_modconv: bool = True,
        gain: float = 1.0,
    ) -> torch.Tensor:
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device, dtype=x.dtype)
            noise = noise * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            noise=noise,
            up=self.up,
            padding=self.padding,
            resample_filter=self.resample_filter,
            flip_weight=(self.up == 1),
            fused_modconv=fused_modconv,
            bias=self.bias,
            gain=self.act_gain * gain,  # folded into the demodulation coefficients (lrelu is homogeneous)
        )
        return act_clamp(x, "lrelu", self.conv_clamp * gain if self.conv_clamp is not None else None)

    def extra_repr(self) -> str:
        return f"in={self.in_channels}, out={self.out_channels}, resolution={self.resolution}, up={self.up}"


class ToRGBLayer(torch.nn.Module):
    """Modulated 1x1 conv to image channels, no demodulation (NVlabs `ToRGBLayer`).

    Args:
        in_channels: feature channels.
        out_channels: image channels.
        w_dim: w size.
        kernel_size: conv kernel size (1).
        conv_clamp: clamp output to +-conv_clamp (None = off).
    """

    def __init__(
        self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1, conv_clamp: float | None = None
    ) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        # No demodulation here, so the equalized-lr gain is folded into the styles.
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv, bias=self.bias)
        return act_clamp(x, "linear", self.conv_clamp)


class SynthesisBlock(torch.nn.Module):
    """One resolution of the skip-architecture synthesis network (NVlabs `SynthesisBlock`).

    Args:
        in_channels: channels of the previous block, 0 for the first (4x4, learned `const`).
        out_channels: channels of this block.
        w_dim: w size.
        resolution: this block's resolution.
        img_channels: image channels (ToRGB output).
        resample_filter: FIR taps for upsampling.
        conv_clamp: clamp activations to +-conv_clamp (None = off).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels,
                out_channels,
                w_dim=w_dim,
                resolution=resolution,
                up=2,
                resample_filter=resample_filter,
                conv_clamp=conv_clamp,
            )
            self.num_conv += 1
        self.conv1 = SynthesisLayer(
            out_channels, out_channels, w_dim=w_dim, resolution=resolution, conv_clamp=conv_clamp
        )
        self.num_conv += 1
        # Skip architecture: every block has a ToRGB, summed into the upsampled image.
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)
        self.num_torgb += 1

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        noise_mode: str = "random",
        fused_modconv: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ws [N, num_conv + num_torgb, w_dim] -> (features, image) at this resolution."""
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
        else:
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
        y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
        img = y if img is None else upsample2d(img, self.resample_filter) + y
        return x, img


class SynthesisNetwork(torch.nn.Module):
    """ws -> image through blocks b4, b8, ..., b{img_resolution} (NVlabs `SynthesisNetwork`).

    Args:
        w_dim: w size.
        img_resolution: output resolution (power of two).
        img_channels: output channels.
        channel_base, channel_max: channels at resolution r = min(channel_base // r, channel_max).
        conv_clamp: clamp activations to +-conv_clamp (None = off).
    """

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        log2 = _check_resolution(img_resolution)
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        self.num_ws = 0
        for res in self.block_resolutions:
            in_ch = _channels(channel_base, channel_max, res // 2) if res > 4 else 0
            block = SynthesisBlock(
                in_ch,
                _channels(channel_base, channel_max, res),
                w_dim=w_dim,
                resolution=res,
                img_channels=img_channels,
                conv_clamp=conv_clamp,
            )
            # Consecutive blocks' ws slices overlap by one (a block's ToRGB reuses the w of
            # the next block's conv0, as in NVlabs), so only the last ToRGB adds a w.
            self.num_ws += block.num_conv
            if res == img_resolution:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def forward(
        self, ws: torch.Tensor, noise_mode: str = "random", fused_modconv: bool | None = None
    ) -> torch.Tensor:
        """ws [N, num_ws, w_dim] -> img [N, img_channels, R, R].

        noise_mode: "random" (fresh noise from the global RNG), "const" (the stored
            `noise_const` buffers: deterministic), or "none".
        fused_modconv: True = per-sample weights + one grouped conv; False = one shared-weight
            conv with activations scaled before/after (identical maths). None = NVlabs' rule:
            fused in eval mode, unfused in training mode, where its backward is cheaper
            (on 2 CPU threads: equal for cpu-tiny, unfused ~15% faster at 128 channels).
        """
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must have shape [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        ws = ws.to(torch.float32)
        if fused_modconv is None:
            fused_modconv = not self.training
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            cur_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            x, img = block(x, img, cur_ws, noise_mode=noise_mode, fused_modconv=fused_modconv)
        return img


class Generator(torch.nn.Module):
    """Unconditional StyleGAN2 generator: `mapping` (z -> ws) then `synthesis` (ws -> img).

    Args:
        cfg: network shape (resolution, img_channels, z_dim, w_dim, mapping_layers,
            channel_base, channel_max, conv_clamp, mapping_lr_mult); None = defaults.
    """

    def __init__(self, cfg: NetworkConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or NetworkConfig()
        self.cfg = cfg
        self.z_dim = cfg.z_dim
        self.w_dim = cfg.w_dim
        self.c_dim = self.num_classes = 0  # unconditional (the uniform interface of gan_core.networks)
        self.img_resolution = cfg.resolution
        self.img_channels = cfg.img_channels
        # NVlabs builds synthesis first (it defines num_ws); same RNG order here.
        self.synthesis = SynthesisNetwork(
            w_dim=cfg.w_dim,
            img_resolution=cfg.resolution,
            img_channels=cfg.img_channels,
            channel_base=cfg.channel_base,
            channel_max=cfg.channel_max,
            conv_clamp=cfg.conv_clamp,
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            z_dim=cfg.z_dim,
            w_dim=cfg.w_dim,
            num_ws=self.num_ws,
            num_layers=cfg.mapping_layers,
            lr_multiplier=cfg.mapping_lr_mult,
        )

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        noise_mode: str = "random",
        update_w_avg: bool = False,
        truncation_cutoff: int | None = None,
        fused_modconv: bool | None = None,
    ) -> torch.Tensor:
        """z [N, z_dim] -> img [N, img_channels, R, R]. `c` (NVlabs' position) is accepted and ignored:
        this generator is unconditional (c_dim = 0), like every G in gan_core.networks takes `c`."""
        ws = self.mapping(
            z, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, update_w_avg=update_w_avg
        )
        return self.synthesis(ws, noise_mode=noise_mode, fused_modconv=fused_modconv)


# ---------------------------------------------------------------------------
# Discriminator
# ---------------------------------------------------------------------------


class DiscriminatorBlock(torch.nn.Module):
    """Residual discriminator block: conv0 (3x3), conv1 (3x3, down 2), skip (1x1, down 2).

    Args:
        in_channels: channels from the previous block, 0 for the first block (which
            then has `fromrgb`; the resnet architecture has no other fromrgb).
        tmp_channels: channels inside the block.
        out_channels: output channels (those of resolution // 2).
        resolution: input resolution of this block.
        img_channels: image channels (fromrgb input).
        resample_filter: FIR taps for downsampling.
        conv_clamp: clamp activations to +-conv_clamp (None = off).
    """

    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        resolution: int,
        img_channels: int,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ) -> None:
        if in_channels not in (0, tmp_channels):
            raise ValueError("in_channels must be 0 (first block) or tmp_channels")
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(
                img_channels, tmp_channels, kernel_size=1, activation="lrelu", conv_clamp=conv_clamp
            )
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(
            tmp_channels,
            out_channels,
            kernel_size=3,
            activation="lrelu",
            down=2,
            resample_filter=resample_filter,
            conv_clamp=conv_clamp,
        )
        self.skip = Conv2dLayer(
            tmp_channels, out_channels, kernel_size=1, bias=False, down=2, resample_filter=resample_filter
        )

    def forward(self, x: torch.Tensor | None, img: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 0:
            x = self.fromrgb(img)
        # sqrt(0.5) on both branches keeps the sum at unit variance.
        y = self.skip(x, gain=SQRT_HALF)
        x = self.conv0(x)
        x = self.conv1(x, gain=SQRT_HALF)
        return y + x


class MinibatchStdLayer(torch.nn.Module):
    """Append the mean per-group feature standard deviation as extra channels.

    Args:
        group_size: samples per group (None = whole batch). The group actually used
            is the largest divisor of the batch size that is <= min(group_size, N), so
            any batch size works (NVlabs requires N % group_size == 0).
        num_channels: number of channel groups, i.e. appended channels.
    """

    def __init__(self, group_size: int | None, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"

    @staticmethod
    def effective_group_size(group_size: int | None, n: int) -> int:
        g = n if group_size is None else max(1, min(int(group_size), n))
        while n % g:
            g -= 1
        return g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = self.effective_group_size(self.group_size, n)
        f = self.num_channels
        # Sample i belongs to group i % (n // g), NVlabs' layout.
        y = x.reshape(g, -1, f, c // f, h, w)  # [G, n, F, c, H, W]
        y = y - y.mean(dim=0)
        y = y.square().mean(dim=0)  # variance over each group
        y = (y + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4])  # [n, F]
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)  # [N, F, H, W]
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(torch.nn.Module):
    """4x4 head: minibatch stddev, 3x3 conv, FC, FC to one logit (NVlabs `DiscriminatorEpilogue`).

    Args:
        in_channels: channels at 4x4.
        resolution: 4.
        mbstd_group_size: minibatch-stddev group size (clipped to the batch).
        mbstd_num_channels: minibatch-stddev channels, 0 = no mbstd layer.
        conv_clamp: clamp activations to +-conv_clamp (None = off).
    """

    def __init__(
        self,
        in_channels: int,
        resolution: int = 4,
        mbstd_group_size: int | None = 4,
        mbstd_num_channels: int = 1,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(
            in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation="lrelu", conv_clamp=conv_clamp
        )
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation="lrelu")
        self.out = FullyConnectedLayer(in_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        return self.out(x)


class Discriminator(torch.nn.Module):
    """Unconditional residual StyleGAN2 discriminator: img [N, C, R, R] -> logits [N, 1].

    Blocks b{R}, b{R/2}, ..., b8 (only the first has `fromrgb`), then the `b4` epilogue.

    Args:
        cfg: network shape (resolution, img_channels, channel_base, channel_max,
            mbstd_group_size, mbstd_num_channels, conv_clamp); None = defaults.
    """

    def __init__(self, cfg: NetworkConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or NetworkConfig()
        log2 = _check_resolution(cfg.resolution)
        self.cfg = cfg
        self.img_resolution = cfg.resolution
        self.img_channels = cfg.img_channels
        self.c_dim = self.num_classes = 0
        self.block_resolutions = [2**i for i in range(log2, 2, -1)]

        def ch(res: int) -> int:
            return _channels(cfg.channel_base, cfg.channel_max, res)

        for res in self.block_resolutions:
            block = DiscriminatorBlock(
                ch(res) if res < cfg.resolution else 0,  # 0 = first block, which reads the image
                ch(res),
                ch(res // 2),
                resolution=res,
                img_channels=cfg.img_channels,
                conv_clamp=cfg.conv_clamp,
            )
            setattr(self, f"b{res}", block)
        self.b4 = DiscriminatorEpilogue(
            ch(4),
            resolution=4,
            mbstd_group_size=cfg.mbstd_group_size,
            mbstd_num_channels=cfg.mbstd_num_channels,
            conv_clamp=cfg.conv_clamp,
        )

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """img [N, img_channels, R, R] in [-1, 1] -> logits [N, 1]; `c` is accepted and ignored (unconditional)."""
        r = self.img_resolution
        if img.ndim != 4 or tuple(img.shape[1:]) != (self.img_channels, r, r):
            raise ValueError(f"img must have shape [N, {self.img_channels}, {r}, {r}], got {list(img.shape)}")
        img = img.to(torch.float32)
        x = None
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, img)
        return self.b4(x)
