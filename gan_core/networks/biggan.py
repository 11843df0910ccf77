"""BigGAN for 32x32 images (Brock et al. 2019), class-conditional, with a projection discriminator.

Generator: z -> SN linear to 4x4 x ch -> three up-ResBlocks with class-conditional BatchNorm
-> BN, ReLU, SN 3x3 conv to RGB -> tanh. Discriminator: `ResNetDiscriminator32` with spectral
norm everywhere and the projection term: logit = linear(h) + <embed(y), h>.

Choices (BigGAN-PyTorch names in brackets):
* Conditional BN: BN without affine, then `x * (1 + gain(cond)) + bias(cond)` with bias-free
  linears (`ccbn`). PyTorch BN defaults (momentum 0.1, eps 1e-5).
* `NetworkConfig.shared_dim > 0` (default 128, the BigGAN paper): a shared class embedding
  (`--G_shared`, a plain embedding of size shared_dim) and a hierarchical latent (`--hier`): z is
  split into 4 chunks (first one -> the input linear, one per block); each block's cond is
  [shared(y), z_chunk] and its gain/bias linears are spectrally normalised. The first chunk takes
  the remainder when z_dim is not a multiple of 4.
  `shared_dim = 0`: the layout of BigGAN-PyTorch's CIFAR scripts (which the DiffAugment and
  DigGAN CIFAR experiments use): no sharing and no hierarchy; each CBN has its own class
  embedding (plain, not SN) and the whole z feeds the input linear.
* Spectral norm on every G conv/linear and every D conv/linear/embedding (`--G_SN`/`--D_SN`,
  one power iteration per training forward). N(0, 0.02) init (`--G_init N02 --D_init N02`).
* No self-attention: BigGAN's CIFAR configuration has none (`--G_attn 0 --D_attn 0`); at 32x32
  the paper's 64x64 attention block would not apply anyway.
* Widths: BigGAN-PyTorch's CIFAR nets use ch = 4 x 64 = 256 in G and D (`g_channels` /
  `d_channels` = 0 picks that); the `biggan-32` preset is much narrower for CPU speed.
* `num_classes` must be >= 1; one class is an unconditional BigGAN.
* Sampling uses the EMA generator in eval mode: BN running statistics and SN vectors are G's own
  (the trainer copies every buffer into G_ema; BigGAN-PyTorch averages them instead, and can
  recompute "standing" statistics, which we do not).
* The trainer draws fake labels uniformly; real labels are the dataset's (class folders).
* Uniform interface: `forward(z, c=None, truncation_psi=1.0, noise_mode=..., update_w_avg=...)`.
  c: class indices [N] or class weights [N, K] (one-hot or soft). c=None draws the class from the
  latent itself, floor(Phi(z[:, 0]) * K) (uniform over classes, deterministic per seed; see
  `resnet32.classes_from_z`). truncation_psi < 1 scales z by psi (after the class is drawn);
  noise_mode and update_w_avg are ignored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_core.config import NetworkConfig
from gan_core.networks.resnet32 import ResNetDiscriminator32, as_onehot, classes_from_z, conv, init_weight, linear

PAPER_CHANNELS = 256  # BigGAN-PyTorch CIFAR: G_ch = D_ch = 64, channel multiplier 4
NUM_G_BLOCKS = 3


class ConditionalBatchNorm2d(nn.Module):
    """BN without affine, then per-sample gain and bias from a condition vector."""

    def __init__(self, channels: int, cond_dim: int, use_sn: bool) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = linear(cond_dim, channels, "n02", bias=False, use_sn=use_sn)
        self.bias = linear(cond_dim, channels, "n02", bias=False, use_sn=use_sn)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        gain = 1 + self.gain(cond).view(cond.shape[0], -1, 1, 1)
        return self.bn(x) * gain + self.bias(cond).view(cond.shape[0], -1, 1, 1)


class GBlock(nn.Module):
    """CBN, ReLU, up x2, SN conv3x3, CBN, ReLU, SN conv3x3; shortcut up x2 then SN conv1x1."""

    def __init__(self, cin: int, cout: int, cond_dim: int, cond_sn: bool) -> None:
        super().__init__()
        self.bn1 = ConditionalBatchNorm2d(cin, cond_dim, cond_sn)
        self.bn2 = ConditionalBatchNorm2d(cout, cond_dim, cond_sn)
        self.conv1 = conv(cin, cout, 3, "n02")
        self.conv2 = conv(cout, cout, 3, "n02")
        self.conv_sc = conv(cin, cout, 1, "n02")

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        h = F.interpolate(F.relu(self.bn1(x, cond)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), cond)))
        return h + self.conv_sc(F.interpolate(x, scale_factor=2, mode="nearest"))


class BigGANGenerator(nn.Module):
    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        if cfg.num_classes < 1:
            raise ValueError("BigGAN needs network.num_classes >= 1 (the trainer takes it from the dataset; "
                             "1 = unconditional)")
        ch = cfg.g_channels or PAPER_CHANNELS
        self.cfg = cfg
        self.z_dim, self.img_resolution, self.img_channels = cfg.z_dim, 32, cfg.img_channels
        self.num_classes = self.c_dim = cfg.num_classes
        self.channels, self.bottom = ch, 4
        self.hier = cfg.shared_dim > 0
        if self.hier:
            if cfg.z_dim < NUM_G_BLOCKS + 1:
                raise ValueError(f"BigGAN's hierarchical latent needs z_dim >= {NUM_G_BLOCKS + 1}, got {cfg.z_dim}")
            chunk = cfg.z_dim // (NUM_G_BLOCKS + 1)
            self.z_chunks = [cfg.z_dim - NUM_G_BLOCKS * chunk] + [chunk] * NUM_G_BLOCKS
            self.shared = init_weight(nn.Linear(cfg.num_classes, cfg.shared_dim, bias=False), "n02")
            cond_dim = cfg.shared_dim + chunk
        else:
            self.z_chunks = [cfg.z_dim]
            self.shared = None
            cond_dim = cfg.num_classes
        self.linear = linear(self.z_chunks[0], self.bottom * self.bottom * ch, "n02")
        self.block1 = GBlock(ch, ch, cond_dim, cond_sn=self.hier)
        self.block2 = GBlock(ch, ch, cond_dim, cond_sn=self.hier)
        self.block3 = GBlock(ch, ch, cond_dim, cond_sn=self.hier)
        self.bn_out = nn.BatchNorm2d(ch)
        self.conv_out = conv(ch, cfg.img_channels, 3, "n02")

    def forward(self, z: Tensor, c: Tensor | None = None, truncation_psi: float = 1.0,
                noise_mode: str = "const", update_w_avg: bool = False) -> Tensor:
        """z [N, z_dim], c [N] indices or [N, K] weights (None: from z) -> img [N, 3, 32, 32] in [-1, 1]."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape [N, {self.z_dim}], got {list(z.shape)}")
        if c is None:
            c = classes_from_z(z, self.num_classes)
        y = as_onehot(c.to(z.device), self.num_classes)
        if y.shape[0] != z.shape[0]:
            raise ValueError(f"c has {y.shape[0]} rows for {z.shape[0]} latents")
        if truncation_psi != 1:
            z = z * truncation_psi
        blocks = (self.block1, self.block2, self.block3)
        if self.shared is not None:
            zs = torch.split(z, self.z_chunks, dim=1)
            emb = self.shared(y)
            conds = [torch.cat([emb, zc], dim=1) for zc in zs[1:]]
            h = self.linear(zs[0])
        else:
            conds = [y] * len(blocks)
            h = self.linear(z)
        h = h.view(-1, self.channels, self.bottom, self.bottom)
        for block, cond in zip(blocks, conds):
            h = block(h, cond)
        return self.conv_out(F.relu(self.bn_out(h))).tanh()


class BigGANDiscriminator(ResNetDiscriminator32):
    """SN-ResNet D with a projection head; `forward(img, c)` needs the class of each image."""

    def __init__(self, cfg: NetworkConfig) -> None:
        if cfg.num_classes < 1:
            raise ValueError("BigGAN needs network.num_classes >= 1 (1 = unconditional)")
        super().__init__(cfg.d_channels or PAPER_CHANNELS, num_classes=cfg.num_classes, init="n02",
                         img_channels=cfg.img_channels)
        self.cfg = cfg
