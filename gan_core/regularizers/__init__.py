"""Discriminator regularizers: one small module each, all behind `DRegularizer`.

`build_regularizers(configs)` turns `RegularizerConfig`s into modules;
`describe_regularizers()` lists what exists for API forms and the CLI.

Built-ins: diggan, r1, r2, gp1, dragan, lecam, nice, maskedgan (docs/regularizers.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..config import SUGGESTED_REGULARIZERS
from . import diggan, gradient_penalties, lecam, maskedgan, nice, r1, r2  # noqa: F401  (registers the built-ins)
from .base import REGISTRY, DRegularizer, InputGradient, RegContext
from .diggan import DigGAN, gradient_gap
from .gradient_penalties import DRAGAN, GP1
from .lecam import LeCam
from .maskedgan import MaskedGAN
from .nice import NICE
from .r1 import R1
from .r2 import R2

__all__ = [
    "DRAGAN",
    "DRegularizer",
    "DigGAN",
    "GP1",
    "InputGradient",
    "LeCam",
    "MaskedGAN",
    "NICE",
    "R1",
    "R2",
    "REGISTRY",
    "RegContext",
    "build_regularizers",
    "describe_regularizers",
    "gradient_gap",
    "suggested_defaults",
]

# Suggested weight / interval for the regularizers that do not declare their own
# (`default_weight` / `default_interval` class attributes): the StyleGAN2 presets' values, with their
# sources, in gan_core/config.py (SUGGESTED_REGULARIZERS).
_SUGGESTED: dict[str, tuple[float, int]] = SUGGESTED_REGULARIZERS


def build_regularizers(configs: Iterable[Any]) -> list[DRegularizer]:
    """Instantiate regularizers from `RegularizerConfig`s (or dicts with the same fields)."""
    regs = []
    for cfg in configs:
        c = cfg if isinstance(cfg, dict) else vars(cfg)
        name = c["name"]
        if name not in REGISTRY:
            raise ValueError(f"unknown regularizer {name!r}; choose from {', '.join(sorted(REGISTRY))}")
        regs.append(REGISTRY[name](c["weight"], c.get("interval", 1), scale_by_interval=c.get("scale_by_interval", True),
                                   **(c.get("params") or {})))
    return regs


def suggested_defaults(name: str) -> tuple[float | None, int | None]:
    """(weight, interval) a form should start from for regularizer `name`."""
    cls = REGISTRY[name]
    weight, interval = _SUGGESTED.get(name, (None, None))
    return getattr(cls, "default_weight", weight), getattr(cls, "default_interval", interval)


def describe_regularizers() -> list[dict[str, Any]]:
    out = []
    for cls in sorted(REGISTRY.values(), key=lambda c: c.name):
        weight, interval = suggested_defaults(cls.name)
        out.append({"name": cls.name, "description": cls.description, "params": dict(cls.params),
                    "default_weight": weight, "default_interval": interval})
    return out
