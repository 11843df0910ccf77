"""SNGAN for 32x32 images (Miyato et al. 2018, the ResNet CIFAR-10 architecture), unconditional.

Generator: z [N, z_dim] -> linear to 4x4 x ch -> three up-ResBlocks (BN, ReLU, x2 nearest
upsample, 3x3 conv, BN, ReLU, 3x3 conv; shortcut upsample + 1x1 conv) -> BN, ReLU, 3x3 conv
to RGB -> tanh. Discriminator: `ResNetDiscriminator32` (spectral norm on every conv and linear,
optimized first block, ReLU, global sum pooling, SN linear), without projection.

Choices:
* Widths: the paper uses ch = 256 in G and 128 in D (`NetworkConfig.g_channels` /
  `d_channels` = 0 picks those); the `sngan-32` preset uses much narrower nets so a CPU step is
  fast. z_dim is 128 in the paper (the preset's value; any size works).
* No spectral norm in G (the paper normalises D only); BatchNorm in G with PyTorch's defaults
  (momentum 0.1, eps 1e-5); the EMA generator uses G's running statistics in eval mode.
* Initialisation as the authors' chainer code: Glorot uniform with gain sqrt(2) on residual
  convs, gain 1 on shortcuts, the first linear and the output conv.
* Uniform generator interface: `forward(z, c=None, truncation_psi=1.0, noise_mode=..., update_w_avg=...)`.
  `c`, `noise_mode` and `update_w_avg` are accepted and ignored (unconditional, no noise inputs,
  no W space). `truncation_psi` < 1 scales z by psi (the latent-space analogue of StyleGAN's pull
  towards the mean; psi = 0 gives the image of z = 0). BigGAN's truncated-normal resampling is not
  used because it would need fresh random draws and break "one seed, one image".
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from gan_core.config import NetworkConfig
from gan_core.networks.resnet32 import ResNetDiscriminator32, conv, init_weight

PAPER_G_CHANNELS = 256
PAPER_D_CHANNELS = 128


class GBlock(nn.Module):
    """Up-ResBlock: BN, ReLU, up x2, conv3x3, BN, ReLU, conv3x3; shortcut up x2 then conv1x1."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(cin), nn.BatchNorm2d(cout)
        self.conv1 = conv(cin, cout, 3, "xavier", math.sqrt(2), use_sn=False)
        self.conv2 = conv(cout, cout, 3, "xavier", math.sqrt(2), use_sn=False)
        self.conv_sc = conv(cin, cout, 1, "xavier", 1.0, use_sn=False)

    def forward(self, x: Tensor) -> Tensor:
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h))))
        return h + self.conv_sc(F.interpolate(x, scale_factor=2, mode="nearest"))


class SNGANGenerator(nn.Module):
    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        ch = cfg.g_channels or PAPER_G_CHANNELS
        self.cfg = cfg
        self.z_dim, self.img_resolution, self.img_channels = cfg.z_dim, 32, cfg.img_channels
        self.num_classes = self.c_dim = 0
        self.bottom = 4
        self.linear = init_weight(nn.Linear(cfg.z_dim, self.bottom * self.bottom * ch), "xavier")
        self.block1, self.block2, self.block3 = GBlock(ch, ch), GBlock(ch, ch), GBlock(ch, ch)
        self.bn_out = nn.BatchNorm2d(ch)
        self.conv_out = conv(ch, cfg.img_channels, 3, "xavier", 1.0, use_sn=False)
        self.channels = ch

    def forward(self, z: Tensor, c: Tensor | None = None, truncation_psi: float = 1.0,
                noise_mode: str = "const", update_w_avg: bool = False) -> Tensor:
        """z [N, z_dim] -> img [N, 3, 32, 32] in [-1, 1]; c, noise_mode, update_w_avg are ignored."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape [N, {self.z_dim}], got {list(z.shape)}")
        if truncation_psi != 1:
            z = z * truncation_psi
        h = self.linear(z).view(-1, self.channels, self.bottom, self.bottom)
        h = self.block3(self.block2(self.block1(h)))
        return self.conv_out(F.relu(self.bn_out(h))).tanh()


class SNGANDiscriminator(ResNetDiscriminator32):
    """Unconditional SN-ResNet D; `forward(img, c=None)` ignores c."""

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__(cfg.d_channels or PAPER_D_CHANNELS, num_classes=0, init="xavier",
                         img_channels=cfg.img_channels)
        self.cfg = cfg
