"""Discriminator regularizers: one small module each, all behind `DRegularizer`.

`build_regularizers(configs)` turns `RegularizerConfig`s into modules;
`describe_regularizers()` lists what exists for API forms and the CLI.
"""

from __future__ import annotations

from typing import Any, Iterable

from . import diggan, r1  # noqa: F401  (registers the built-ins)
from .base import REGISTRY, DRegularizer, InputGradient, RegContext
from .diggan import DigGAN, gradient_gap
from .r1 import R1

__all__ = [
    "DRegularizer",
    "DigGAN",
    "InputGradient",
    "R1",
    "REGISTRY",
    "RegContext",
    "build_regularizers",
    "describe_regularizers",
    "gradient_gap",
]


def build_regularizers(configs: Iterable[Any]) -> list[DRegularizer]:
    """Instantiate regularizers from `RegularizerConfig`s (or dicts with the same fields)."""
    regs = []
    for cfg in configs:
        c = cfg if isinstance(cfg, dict) else vars(cfg)
        name = c["name"]
        if name not in REGISTRY:
            raise ValueError(f"unknown regularizer {name!r}; choose from {', '.join(sorted(REGISTRY))}")
        regs.append(REGISTRY[name](c["weight"], c.get("interval", 1), **(c.get("params") or {})))
    return regs


def describe_regularizers() -> list[dict[str, Any]]:
    return [
        {"name": cls.name, "description": cls.description, "params": dict(cls.params)}
        for cls in sorted(REGISTRY.values(), key=lambda c: c.name)
    ]
