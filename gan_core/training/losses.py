"""GAN losses as pure functions (logistic/non-saturating and hinge), plus the (stateful) path-length regularizer."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def g_nonsaturating_loss(fake_logits: Tensor) -> Tensor:
    """Generator: -log sigmoid(D(G(z)))."""
    return F.softplus(-fake_logits).mean()


def d_logistic_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Discriminator: -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z))))."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_hinge_loss(fake_logits: Tensor) -> Tensor:
    """Generator, hinge GAN (SNGAN/BigGAN): -D(G(z))."""
    return -fake_logits.mean()


def d_hinge_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Discriminator, hinge GAN: max(0, 1 - D(x)) + max(0, 1 + D(G(z)))."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


# TrainConfig.loss -> (G loss, D loss)
LOSSES = {
    "logistic": (g_nonsaturating_loss, d_logistic_loss),
    "hinge": (g_hinge_loss, d_hinge_loss),
}


class PathLengthRegularizer(nn.Module):
    """StyleGAN2 path-length regularization on the generator (Karras et al. 2020).

    Penalises deviation of |J_w^T y| from its running mean `pl_mean`, which is a
    buffer so it is saved in checkpoints.
    """

    def __init__(self, decay: float = 0.01) -> None:
        super().__init__()
        self.decay = decay
        self.register_buffer("pl_mean", torch.zeros([]))

    def forward(self, G: nn.Module, z: Tensor, ws_fn: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """`ws_fn(z)`: the trainer's mapping with style mixing (NVlabs' Gpl runs run_G); None = G.mapping."""
        ws = G.mapping(z) if ws_fn is None else ws_fn(z)
        img = G.synthesis(ws)
        noise = torch.randn_like(img) / np.sqrt(img.shape[2] * img.shape[3])
        (grad,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
        lengths = grad.square().sum(2).mean(1).sqrt()
        pl_mean = self.pl_mean.lerp(lengths.mean().detach(), self.decay)
        self.pl_mean.copy_(pl_mean)
        return (lengths - pl_mean).square().mean()
