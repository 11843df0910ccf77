"""The DigGAN paper's toy experiment (section 3.3): two real 1-D points, vanilla GAN vs DigGAN.

Two variants:
  paper   (default) the toy as the paper writes it: G a 4-layer FC net (5 units) producing two points
          from two fixed latent inputs, D a 4-layer FC net (10 units, sigmoid), both trained with Adam;
          Experiments 1-4 over many seeds with paired tests. Settings and their sources:
          gan_core/toy/settings.py; results: docs/results.md ("The paper's toy").
  legacy  the earlier variant (sampled latents, SGD with momentum, tanh D): gan_core/toy/legacy.py.

Modules: settings (every number and its source), nets (batched MLPs, Adam), train (the loop),
penalty (the DigGAN term), analysis (reading a run), stats (paired tests), experiments (Exp. 1-4,
summary.json), figures (paper-style PNGs), cli (`python -m gan_core toy ...`).
"""

from __future__ import annotations

import importlib
from typing import Any

# Names resolve lazily, so `python -m gan_core ...` does not import torch and scipy for the toy
# until the toy subcommand runs.
_EXPORTS = {
    "DEFAULT_SETTINGS": "legacy",
    "ToySettings": "legacy",
    "run_toy": "legacy",
    "PAPER_SETTINGS": "settings",
    "PaperSettings": "settings",
    "add_cli": "cli",
    "dig_penalty": "penalty",
    "input_grad_norms": "penalty",
    "run_paper": "experiments",
}
__all__ = [
    "DEFAULT_SETTINGS",
    "PAPER_SETTINGS",
    "PaperSettings",
    "ToySettings",
    "add_cli",
    "dig_penalty",
    "input_grad_norms",
    "run_paper",
    "run_toy",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
