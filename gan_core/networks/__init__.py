"""Generator/discriminator pairs behind one interface, chosen by `NetworkConfig.arch`.

    from gan_core.networks import build_networks
    G, D = build_networks(cfg)   # cfg: gan_core.config.NetworkConfig; arch "stylegan2" | "sngan" | "biggan"

Every generator has `z_dim`, `img_resolution`, `img_channels`, `c_dim` (= `num_classes`, 0 when
unconditional) and `G(z, c=None, truncation_psi=1.0, noise_mode=..., update_w_avg=False)` -> images
in [-1, 1]; every discriminator has `D(img, c=None)` -> logits [N, 1]. Arguments that do not apply
to an architecture are accepted and ignored (see each module's docstring), so sampling, EMA,
metrics and the service work on any of them. `Generator`/`Discriminator` remain the StyleGAN2 pair.
"""

from __future__ import annotations

from torch import nn

from gan_core.config import ARCHS, NetworkConfig
from gan_core.networks.stylegan2 import (
    Discriminator,
    Generator,
    MappingNetwork,
    MinibatchStdLayer,
    SynthesisNetwork,
)

__all__ = [
    "ARCHS",
    "Discriminator",
    "Generator",
    "MappingNetwork",
    "MinibatchStdLayer",
    "SynthesisNetwork",
    "build_discriminator",
    "build_generator",
    "build_networks",
]


def _classes(arch: str) -> tuple[type[nn.Module], type[nn.Module]]:
    if arch == "stylegan2":
        return Generator, Discriminator
    if arch == "sngan":
        from gan_core.networks.sngan import SNGANDiscriminator, SNGANGenerator

        return SNGANGenerator, SNGANDiscriminator
    if arch == "biggan":
        from gan_core.networks.biggan import BigGANDiscriminator, BigGANGenerator

        return BigGANGenerator, BigGANDiscriminator
    raise ValueError(f"unknown network.arch {arch!r}; choose one of {', '.join(ARCHS)}")


def build_generator(cfg: NetworkConfig) -> nn.Module:
    return _classes(cfg.arch)[0](cfg)


def build_discriminator(cfg: NetworkConfig) -> nn.Module:
    return _classes(cfg.arch)[1](cfg)


def build_networks(cfg: NetworkConfig) -> tuple[nn.Module, nn.Module]:
    """(G, D) for `cfg.arch`, G built first (the StyleGAN2 RNG order, so seeds keep their weights)."""
    g_cls, d_cls = _classes(cfg.arch)
    G = g_cls(cfg)
    return G, d_cls(cfg)
