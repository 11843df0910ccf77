"""Differentiable augmentations for the discriminator's inputs (reals and fakes alike).

`build_augment(cfg)` picks ADA (`AdaAugment`, p tuned by `AdaptiveP`), DiffAugment,
or nothing, from an `AugmentConfig`.
"""

from __future__ import annotations

from torch import nn

from gan_core.augment.ada import AdaAugment, AdaptiveP
from gan_core.augment.diffaugment import DiffAugment, diff_augment
from gan_core.config import AUGMENT_KINDS, AugmentConfig

__all__ = ["AdaAugment", "AdaptiveP", "DiffAugment", "diff_augment", "build_augment"]


def build_augment(cfg: AugmentConfig) -> nn.Module:
    """AdaAugment(p=cfg.initial_p) | DiffAugment(cfg.diffaugment_policy) | nn.Identity."""
    if cfg.kind == "ada":
        return AdaAugment(p=cfg.initial_p)
    if cfg.kind == "diffaugment":
        return DiffAugment(cfg.diffaugment_policy)
    if cfg.kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown augment kind {cfg.kind!r}; valid kinds: {', '.join(AUGMENT_KINDS)}")
