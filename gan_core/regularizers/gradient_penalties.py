"""One-centred gradient penalties that need their own D pass: GP-1 and DRAGAN.

Both evaluate D at points that are neither the real nor the fake batch, so
they run one extra forward pass (plus double backward) through `ctx.D` on the
augmented images of this step (`ctx.real_aug`, `ctx.fake_aug`, detached), and
pull the per-sample input-gradient norm towards `center` (1 by default):

    penalty = weight * mean((||grad_x D(x_hat)||_2 - center)^2)

Random numbers come from torch's global generator (seeded by the trainer and
saved in checkpoints), in a fixed documented order, so runs are reproducible
and a hand computation can replay them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import DRegularizer, RegContext, call_d, register


def gradient_norms_at(D: nn.Module, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """D's logits at `x` (with labels `c` for a conditional D) and the per-sample L2 norm of
    d(sum logits)/dx, differentiable (create_graph)."""
    x = x.detach().requires_grad_(True)
    logits = call_d(D, x, c)
    (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    return logits, grad.flatten(1).norm(dim=1)


def wgan_gp_interpolates(real: Tensor, fake: Tensor) -> Tensor:
    """`eps * real + (1 - eps) * fake`, eps ~ U[0, 1) per sample (one torch.rand of shape [N, 1, 1, 1])."""
    n = min(real.shape[0], fake.shape[0])
    real, fake = real[:n].detach(), fake[:n].detach()
    eps = torch.rand([n] + [1] * (real.ndim - 1), device=real.device, dtype=real.dtype)
    return eps * real + (1 - eps) * fake


def dragan_perturb(real: Tensor, noise_scale: float = 0.5, interpolate: bool = True) -> Tensor:
    """DRAGAN's perturbed reals, as in the authors' code (kodalinaveen3/DRAGAN).

    x_p = x + noise_scale * std(x) * U[0,1)   (std over the whole batch, population std; one
    torch.rand_like(x)); with `interpolate` the point is taken on the segment from x to x_p:
    x_hat = x + alpha * (x_p - x), alpha ~ U[0,1) per sample (a second torch.rand, [N, 1, 1, 1]).
    """
    x = real.detach()
    delta = noise_scale * x.std(correction=0) * torch.rand_like(x)
    if not interpolate:
        return x + delta
    alpha = torch.rand([x.shape[0]] + [1] * (x.ndim - 1), device=x.device, dtype=x.dtype)
    return x + alpha * delta


@register
class GP1(DRegularizer):
    """WGAN-GP's penalty (Gulrajani et al. 2017) on real/fake interpolates, added to the logistic loss."""

    name = "gp1"
    description = (
        "One-centred gradient penalty (WGAN-GP style) on random real/fake interpolates: "
        "weight * mean((||grad D(x_hat)|| - center)^2); one extra D pass."
    )
    params = {"center": 1.0}  # WGAN-GP: norm pulled to 1 (Gulrajani et al. 2017)
    default_weight = 10.0  # WGAN-GP lambda = 10 (Gulrajani et al. 2017, Algorithm 1)
    default_interval = 16  # ours: lazy like NVlabs' R1, for cost (WGAN-GP applies it every D step)

    def penalty(self, ctx: RegContext) -> tuple[Tensor, dict[str, float]]:
        x_hat = wgan_gp_interpolates(ctx.real_aug, ctx.fake_aug)
        # A conditional D would need a label for a real/fake mix: validate_config refuses gp1 there.
        _, norms = gradient_norms_at(ctx.D, x_hat, ctx.real_c)
        gp = (norms - self.hparams["center"]).square().mean()
        return gp * self.weight, {"gp1": gp.detach(), "gp1_grad_norm": norms.detach().mean()}


@register
class DRAGAN(DRegularizer):
    """DRAGAN (Kodali et al. 2017): the one-centred penalty in a noise ball around the reals."""

    name = "dragan"
    description = (
        "DRAGAN: weight * mean((||grad D(x_hat)|| - center)^2) at reals perturbed by "
        "noise_scale * std(x) * U[0,1) noise (random point on the segment when interpolate=1); one extra D pass."
    )
    # kodalinaveen3/DRAGAN: X_p = X + 0.5 * X.std() * np.random.random(X.shape), alpha on the segment, ||grad|| -> 1
    params = {"noise_scale": 0.5, "center": 1.0, "interpolate": 1.0}
    default_weight = 10.0  # kodalinaveen3/DRAGAN: lambda_ = 10
    default_interval = 16  # ours: lazy like NVlabs' R1, for cost (DRAGAN applies it every D step)

    def penalty(self, ctx: RegContext) -> tuple[Tensor, dict[str, float]]:
        x_hat = dragan_perturb(ctx.real_aug, self.hparams["noise_scale"], bool(self.hparams["interpolate"]))
        _, norms = gradient_norms_at(ctx.D, x_hat, ctx.real_c)  # perturbed reals keep their labels
        gp = (norms - self.hparams["center"]).square().mean()
        return gp * self.weight, {"dragan": gp.detach(), "dragan_grad_norm": norms.detach().mean()}
