"""StyleGAN2 networks in pure PyTorch, with NVlabs stylegan2-ada-pytorch names.

    from gan_core.networks import Generator, Discriminator
    G = Generator(cfg)   # cfg: gan_core.config.NetworkConfig
    D = Discriminator(cfg)
"""

from __future__ import annotations

from gan_core.networks.stylegan2 import (
    Discriminator,
    Generator,
    MappingNetwork,
    MinibatchStdLayer,
    SynthesisNetwork,
)

__all__ = ["Discriminator", "Generator", "MappingNetwork", "MinibatchStdLayer", "SynthesisNetwork"]
