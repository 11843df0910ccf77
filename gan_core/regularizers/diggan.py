"""DigGAN: the discriminator gradient gap regularizer (Fang et al., NeurIPS 2022).

For each real/fake pair the gap between D's input-gradient norms is squared:
`DIG = (||grad D(x_real)|| - ||grad D(x_fake)||)^2`. Real and fake samples are
paired at random within the minibatch, and each side's vector of per-sample
norms is smoothed with a moving average to cut minibatch variance:

    g_b(t) = alpha * ||grad D(x_b)|| + (1 - alpha) * g_b(t-1)      b in {real, fake}

where g_b(t-1) is a constant (detached) and the current batch carries the
gradient; alpha = 1 is no smoothing. The penalty added to D's loss is
`lambda * mean((g_real(t) - g_fake(t))^2)`.

Choices the paper leaves open, made as in the authors' BigGAN code: the moving
average runs elementwise over the minibatch vector (slot i of this step blends
with slot i of the last step), and pairing is a fresh random permutation of the
fake norms each step. When the batch size changes the average restarts.

Weight and schedule: the StyleGAN2 presets use the paper's lambda 100 (section 4.4) lazily,
every 8 minibatches with the weight x 8 (`scale_by_interval`, NVlabs' lazy R1; there is no
authors' StyleGAN2 code). The SNGAN/BigGAN presets follow the authors' BigGAN-CIFAR scripts:
lambda = 1000 / data fraction without augmentation, once per G step on the first of the D
steps, not scaled (`scale_by_interval=False`, gan_core.config.diggan_cifar_lambda).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..config import DIGGAN_ALPHA
from .base import DRegularizer, RegContext, register


def gradient_gap(
    real_norms: Tensor,
    fake_norms: Tensor,
    alpha: float,
    prev_real: Tensor | None,
    prev_fake: Tensor | None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The smoothed DigGAN term. Returns (mean squared gap, g_real(t), g_fake(t)).

    Pure function so a hand computation can check it term by term.
    """
    # CPU draw (same pairing on every device), copied without blocking the host on a GPU.
    perm = torch.randperm(fake_norms.shape[0], generator=generator, device="cpu")
    perm = perm.to(fake_norms.device, non_blocking=True)
    fake_norms = fake_norms[perm]  # random real/fake pairing
    if prev_real is not None and prev_real.shape == real_norms.shape:
        real_norms = alpha * real_norms + (1 - alpha) * prev_real.detach().to(real_norms.device)
    if prev_fake is not None and prev_fake.shape == fake_norms.shape:
        fake_norms = alpha * fake_norms + (1 - alpha) * prev_fake.detach().to(fake_norms.device)
    gap = (real_norms - fake_norms).square().mean()
    return gap, real_norms, fake_norms


@register
class DigGAN(DRegularizer):
    name = "diggan"
    description = "Discriminator gradient gap penalty: lambda * mean((g_real - g_fake)^2), smoothed by alpha."
    params = {"alpha": DIGGAN_ALPHA}  # AilsaF/DigGAN train_fns.py: 0.5 * grad + 0.5 * grad_ema
    needs_real_grad = True
    needs_fake_grad = True

    def __init__(self, weight: float, interval: int = 1, **params: float) -> None:
        super().__init__(weight, interval, **params)
        alpha = self.hparams["alpha"]
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"diggan alpha must be in (0, 1], got {alpha}")
        self.prev_real: Tensor | None = None
        self.prev_fake: Tensor | None = None

    def penalty(self, ctx: RegContext) -> tuple[Tensor, dict[str, float]]:
        real_norms = ctx.real().norms
        fake_norms = ctx.fake().norms
        gap, g_real, g_fake = gradient_gap(
            real_norms, fake_norms, self.hparams["alpha"], self.prev_real, self.prev_fake
        )
        self.prev_real, self.prev_fake = g_real.detach(), g_fake.detach()
        stats = {"dig_smoothed": gap.detach()}  # a tensor: read once per tick, no sync per step
        return gap * self.weight, stats

    def extra_state(self) -> dict[str, Tensor]:
        if self.prev_real is None or self.prev_fake is None:
            return {}
        return {"prev_real": self.prev_real.cpu(), "prev_fake": self.prev_fake.cpu()}

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        self.prev_real = state.get("prev_real")
        self.prev_fake = state.get("prev_fake")
