"""Building blocks shared by the 32x32 SNGAN and BigGAN backbones.

Both follow the residual CIFAR layouts of Miyato et al. 2018 (SNGAN, chainer code
`pfnet-research/sngan_projection`) and Brock et al. 2019 (BigGAN, `ajbrock/BigGAN-PyTorch`,
whose CIFAR D is the same four-block ResNet). Choices made here:

* Spectral norm is `torch.nn.utils.parametrizations.spectral_norm` (one power iteration per
  training-mode forward, u/v kept as buffers, so they are checkpointed and resume exactly).
  Its sigma is computed from cloned u/v, so D's input gradient can itself be differentiated
  (create_graph=True for R1/DigGAN): checked in tests/unit/test_backbones.py with gradgradcheck.
  The older `torch.nn.utils.spectral_norm` hook also passes that check; the parametrization is
  the maintained API.
* Resampling is nearest-neighbour x2 up (G) and 2x2 average pooling down (D), as in both papers.
* `DBlock` with `preactivation=False` is SNGAN's "optimized" first block (conv, ReLU, conv, pool;
  shortcut pool then 1x1 conv); with `preactivation=True` the usual pre-activation block
  (ReLU first; shortcut 1x1 conv then pool when channels change or it downsamples, else identity).
  This is also BigGAN-PyTorch's `DBlock` (its first block is not pre-activated).
* `ResNetDiscriminator32`: blocks 32->16->8->8->8, ReLU, global *sum* pooling, SN linear to one
  logit; with `num_classes > 0` a projection term <embed(y), h> (Miyato & Koyama 2018) is added,
  the embedding spectrally normalised as in BigGAN. No minibatch-stddev and no self-attention
  (BigGAN's CIFAR configuration uses none: `--D_attn 0`).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

Init = Literal["xavier", "n02"]


def sn(module: nn.Module, enabled: bool = True) -> nn.Module:
    """Wrap `module.weight` in spectral normalisation (1 power iteration per training forward)."""
    return spectral_norm(module) if enabled else module


def init_weight(module: nn.Module, init: Init, gain: float = 1.0) -> nn.Module:
    """Initialise a conv/linear before it is wrapped in spectral norm.

    "xavier": Glorot uniform with `gain` (SNGAN's chainer code: sqrt(2) on residual convs, 1 elsewhere);
    "n02": N(0, 0.02) (BigGAN-PyTorch's `--G_init N02 --D_init N02`, its CIFAR setting). Biases start at 0.
    """
    w = module.weight  # type: ignore[union-attr]
    if init == "xavier":
        nn.init.xavier_uniform_(w, gain)
    else:
        nn.init.normal_(w, 0.0, 0.02)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)  # type: ignore[arg-type]
    return module


def conv(cin: int, cout: int, k: int, init: Init, gain: float = 1.0, use_sn: bool = True) -> nn.Module:
    return sn(init_weight(nn.Conv2d(cin, cout, k, padding=k // 2), init, gain), use_sn)


def linear(cin: int, cout: int, init: Init, bias: bool = True, use_sn: bool = True) -> nn.Module:
    return sn(init_weight(nn.Linear(cin, cout, bias=bias), init), use_sn)


def as_onehot(c: Tensor, num_classes: int) -> Tensor:
    """Class indices [N] (int) or class weights [N, K] (float, one-hot or soft) -> float [N, K]."""
    if c.ndim == 1 and not c.is_floating_point():
        if c.numel() and (int(c.min()) < 0 or int(c.max()) >= num_classes):
            raise ValueError(f"class index out of range [0, {num_classes}): {c.tolist()[:8]}")
        return F.one_hot(c.long(), num_classes).float()
    if c.ndim == 2 and c.shape[1] == num_classes:
        return c.float()
    raise ValueError(f"c must be class indices [N] or class weights [N, {num_classes}], got shape {list(c.shape)}")


def classes_from_z(z: Tensor, num_classes: int) -> Tensor:
    """A class per latent when none is given: floor(Phi(z[:, 0]) * K).

    Uniform over the K classes for z ~ N(0, I), deterministic per latent (a seed always means the
    same class), and free of extra random draws, so G(z) alone still samples every class
    (metrics, exports, grids) without touching the RNG the trainer checkpoints.
    """
    u = torch.special.ndtr(z[:, 0].float())
    return (u * num_classes).long().clamp_(0, num_classes - 1)


class DBlock(nn.Module):
    """Residual discriminator block (see the module docstring for the two variants)."""

    def __init__(self, cin: int, cout: int, downsample: bool, preactivation: bool, init: Init) -> None:
        super().__init__()
        self.downsample, self.preactivation = downsample, preactivation
        self.conv1 = conv(cin, cout, 3, init, math.sqrt(2))
        self.conv2 = conv(cout, cout, 3, init, math.sqrt(2))
        self.learnable_sc = cin != cout or downsample
        if self.learnable_sc:
            self.conv_sc = conv(cin, cout, 1, init, 1.0)

    def _shortcut(self, x: Tensor) -> Tensor:
        if not self.learnable_sc:
            return x
        if self.preactivation:
            x = self.conv_sc(x)
            return F.avg_pool2d(x, 2) if self.downsample else x
        x = F.avg_pool2d(x, 2) if self.downsample else x
        return self.conv_sc(x)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(x) if self.preactivation else x
        h = self.conv2(F.relu(self.conv1(h)))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        return h + self._shortcut(x)


class ResNetDiscriminator32(nn.Module):
    """img [N, 3, 32, 32] (and class c when num_classes > 0) -> logits [N, 1].

    block1 (32->16, optimized), block2 (16->8), block3 (8), block4 (8), ReLU, sum over space,
    `linear` (SN) + projection `embed` (SN, only when conditional).
    """

    block_input_resolutions = (32, 16, 8, 8)

    def __init__(self, channels: int, num_classes: int, init: Init, img_channels: int = 3) -> None:
        super().__init__()
        self.img_resolution, self.img_channels = 32, img_channels
        self.num_classes = self.c_dim = num_classes
        self.block1 = DBlock(img_channels, channels, downsample=True, preactivation=False, init=init)
        self.block2 = DBlock(channels, channels, downsample=True, preactivation=True, init=init)
        self.block3 = DBlock(channels, channels, downsample=False, preactivation=True, init=init)
        self.block4 = DBlock(channels, channels, downsample=False, preactivation=True, init=init)
        self.linear = linear(channels, 1, init)
        # Projection: <embed(y), h> = h . (W^T onehot(y)); a bias-free SN linear on the one-hot label.
        self.embed = linear(num_classes, channels, init, bias=False) if num_classes > 0 else None

    def blocks(self) -> list[nn.Module]:
        return [self.block1, self.block2, self.block3, self.block4]

    def nice_targets(self, max_res: float = 16.0) -> list[nn.Module]:
        """NICE's noise sites: blocks whose *input* resolution is <= max_res (StyleGAN2's `b{res}` rule)."""
        return [b for b, r in zip(self.blocks(), self.block_input_resolutions) if r <= max_res]

    def features(self, img: Tensor) -> Tensor:
        r = self.img_resolution
        if img.ndim != 4 or tuple(img.shape[1:]) != (self.img_channels, r, r):
            raise ValueError(f"img must have shape [N, {self.img_channels}, {r}, {r}], got {list(img.shape)}")
        h = img if img.is_floating_point() else img.float()  # keep float64 for gradient checks
        for block in self.blocks():
            h = block(h)
        return F.relu(h).sum(dim=(2, 3))  # global sum pooling, as both papers

    def forward(self, img: Tensor, c: Tensor | None = None) -> Tensor:
        h = self.features(img)
        out = self.linear(h)
        if self.embed is not None:
            if c is None:
                raise ValueError(f"this discriminator is class-conditional ({self.num_classes} classes): pass c")
            y = as_onehot(c.to(h.device), self.num_classes).to(h.dtype)
            out = out + (self.embed(y) * h).sum(1, keepdim=True)
        return out
