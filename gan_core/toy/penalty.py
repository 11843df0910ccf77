"""The DigGAN penalty's two halves on 1-D toy inputs, shared by both toy variants.

`input_grad_norms` gives D's logits and the per-sample norm of d logit / d x (paper Eq. 2's
gradient); `dig_penalty` smooths two such norm vectors with the paper's moving average (Eq. 3)
and returns the mean squared gap. Both work on any leading batch axes, so many independent
toy models can be trained as one batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["dig_penalty", "input_grad_norms", "pairwise_dig"]


def input_grad_norms(
    d_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, create_graph: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """D's logits and the per-sample L2 norm of d logit / d x.

    x: [..., N, dim]; d_fn(x) -> logits [..., N] or [..., N, 1]. Returns (logits [..., N], norms [..., N]).
    create_graph=True keeps the norms differentiable w.r.t. D's parameters (double backward).
    """
    x = x.detach().requires_grad_(True)
    logits = d_fn(x)
    if logits.dim() == x.dim():
        logits = logits.squeeze(-1)
    # retain_graph: the caller still backpropagates its loss through `logits`
    (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=create_graph, retain_graph=True)
    return logits, torch.linalg.vector_norm(grad, dim=-1)


def dig_penalty(
    g_real: torch.Tensor,
    g_fake: torch.Tensor,
    alpha: float,
    prev: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """DigGAN regularizer (paper Eq. 3) on already-paired per-sample gradient norms.

    g_beta(t) = alpha * ||grad D(x_beta)|| + (1 - alpha) * g_beta(t-1).detach(), elementwise over the
    batch vector, for beta in {real, fake}; at the first step (prev None) g_beta(t) is the raw norm
    (as in the authors' BigGAN code, AilsaF/DigGAN DiffAugment-biggan-cifar/train_fns.py). Returns
    (mean over the last axis of (g_real(t) - g_fake(t))^2, the detached (g_real(t), g_fake(t)) to pass
    as `prev` next step).
    """
    if prev is not None:
        g_real = alpha * g_real + (1.0 - alpha) * prev[0].detach()
        g_fake = alpha * g_fake + (1.0 - alpha) * prev[1].detach()
    pen = ((g_real - g_fake) ** 2).mean(dim=-1)
    return pen, (g_real.detach(), g_fake.detach())


def pairwise_dig(g_real: torch.Tensor, g_fake: torch.Tensor) -> torch.Tensor:
    """Paper Eq. 2 averaged over every real/fake pair: mean_ij (|grad D(x_r,i)| - |grad D(x_f,j)|)^2.

    g_real [..., N], g_fake [..., M] -> [...]. This is the expectation of the randomly paired DIG over
    the pairing, so a logged DIG curve carries no pairing noise.
    """
    return ((g_real.unsqueeze(-1) - g_fake.unsqueeze(-2)) ** 2).mean(dim=(-2, -1))
