"""Freeze-D: keep the discriminator's first N layers (from the input side) fixed while fine-tuning.

Mo, Cho & Shin, "Freeze the Discriminator: a Simple Baseline for Fine-Tuning GANs" (2020), as
NVlabs stylegan2-ada-pytorch implements it (`train.py --freezed=N`, `DiscriminatorBlock.freeze_layers`):
D's conv layers are numbered from the image side, block by block, in creation order -
`b{R}.fromrgb` 0, `b{R}.conv0` 1, `b{R}.conv1` 2, `b{R}.skip` 3, `b{R/2}.conv0` 4, ... - and layer i is
frozen when i < N. The 4x4 epilogue (`b4`: mbstd, conv, fc, out) is never frozen, as in NVlabs.
(NVlabs registers a frozen layer's weights as buffers; here they stay parameters with
requires_grad=False and are left out of D's optimizer, so checkpoints keep the same keys.)

The trainer needs two things (see `apply_freeze_d`):

    self.D_opt = torch.optim.Adam(apply_freeze_d(self.D, cfg.freeze_d_layers), lr=..., betas=..., eps=...)
    ...
    self.D.requires_grad_(True); apply_freeze_d(self.D, cfg.freeze_d_layers)   # after each G step

With N = 0 `apply_freeze_d` returns `list(D.parameters())` in the same order, so runs without
Freeze-D keep their optimizer state layout (exact resume) and their bits.
"""

from __future__ import annotations

from torch import nn

# Conv layers of a StyleGAN2 DiscriminatorBlock in NVlabs' creation (= numbering) order.
_BLOCK_LAYERS = ("fromrgb", "conv0", "conv1", "skip")


def d_layers(D: nn.Module) -> list[str]:
    """Module names of D's freezable layers, input side first (NVlabs' layer numbering)."""
    from gan_core.networks.stylegan2 import Discriminator

    if not isinstance(D, Discriminator):
        raise ValueError(
            f"Freeze-D is implemented for the StyleGAN2 discriminator only, not {type(D).__name__} "
            "(set freeze_d_layers=0 for sngan/biggan)")
    names = []
    for res in D.block_resolutions:  # R, R/2, ..., 8: the input side first
        block = getattr(D, f"b{res}")
        names += [f"b{res}.{layer}" for layer in _BLOCK_LAYERS if hasattr(block, layer)]
    return names


def frozen_parameter_names(D: nn.Module, n: int) -> list[str]:
    """Names (as in `D.named_parameters()`) of the parameters of D's first `n` layers."""
    layers = d_layers(D)
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"freeze_d_layers must be an integer >= 0, got {n!r}")
    if n > len(layers):
        raise ValueError(f"freeze_d_layers={n}, but this discriminator has only {len(layers)} freezable layers "
                         f"({layers[0]} .. {layers[-1]}; the 4x4 epilogue always trains)")
    prefixes = tuple(name + "." for name in layers[:n])
    return [name for name, _ in D.named_parameters() if name.startswith(prefixes)]


def apply_freeze_d(D: nn.Module, n: int) -> list[nn.Parameter]:
    """Set requires_grad=False on D's first `n` layers; return the parameters that still train
    (in `D.parameters()` order), which is what D's optimizer must be built from."""
    if n == 0 and not isinstance(n, bool):
        return list(D.parameters())
    frozen = set(frozen_parameter_names(D, n))
    trainable = []
    for name, p in D.named_parameters():
        if name in frozen:
            p.requires_grad_(False)
        else:
            trainable.append(p)
    return trainable
