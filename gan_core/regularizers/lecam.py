"""LeCam regularization (Tseng et al., CVPR 2021, "Regularizing Generative
Adversarial Networks under Limited Data").

Two scalar anchors follow D's mean logit on real and on fake images with an
exponential moving average; D's outputs are pulled towards the *other* side's
anchor, but only when they overshoot it:

    a_R(t) = decay * a_R(t-1) + (1 - decay) * mean(D(x_real))
    a_F(t) = decay * a_F(t-1) + (1 - decay) * mean(D(G(z)))
    R_LC   = mean(relu(D(x_real) - a_F(t))^2) + mean(relu(a_R(t) - D(G(z)))^2)

The anchors are constants (no gradient). As in the authors' code the anchors
are updated with the current batch *before* the penalty is computed, and the
first update sets them to the batch means (the authors' EMA runs with decay 0
until `ema_start`, which amounts to the same at the first step).

Defaults: weight 0.3 and decay 0.99, the StyleGAN2 (+DiffAugment/ADA) setting;
for BigGAN the project notes give decay 0.9, and the paper uses a much smaller
weight there (0.01 as we recall it; check the paper before reproducing). It reuses D's logits of the main loss (the
RegContext cache), so it costs no extra D pass. The anchors move once per call:
run it every minibatch (interval 1, the default here) to get the paper's
per-step EMA; with interval k the EMA horizon stretches k-fold.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .base import DRegularizer, RegContext, register


def lecam_penalty(real_logits: Tensor, fake_logits: Tensor, anchor_real: Tensor, anchor_fake: Tensor) -> Tensor:
    """`mean(relu(D(x_r) - a_F)^2) + mean(relu(a_R - D(G(z)))^2)`; anchors are treated as constants."""
    return (
        F.relu(real_logits - anchor_fake.detach()).square().mean()
        + F.relu(anchor_real.detach() - fake_logits).square().mean()
    )


@register
class LeCam(DRegularizer):
    name = "lecam"
    description = (
        "LeCam (Tseng et al. 2021): EMA anchors of D's mean real/fake logits; penalty "
        "mean(relu(D(x_r) - ema_fake)^2) + mean(relu(ema_real - D(G(z)))^2). "
        "Weight 0.3 for StyleGAN2; run every step (interval 1)."
    )
    params = {"decay": 0.99}
    default_weight = 0.3
    default_interval = 1

    def __init__(self, weight: float, interval: int = 1, **params: float) -> None:
        super().__init__(weight, interval, **params)
        decay = self.hparams["decay"]
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"lecam decay must be in [0, 1), got {decay}")
        self.ema_real: Tensor | None = None
        self.ema_fake: Tensor | None = None

    def update_anchors(self, real_logits: Tensor, fake_logits: Tensor) -> tuple[Tensor, Tensor]:
        mr = real_logits.detach().float().mean()
        mf = fake_logits.detach().float().mean()
        if self.ema_real is None or self.ema_fake is None:
            self.ema_real, self.ema_fake = mr, mf
        else:
            d = self.hparams["decay"]
            self.ema_real = d * self.ema_real.to(mr.device) + (1 - d) * mr
            self.ema_fake = d * self.ema_fake.to(mf.device) + (1 - d) * mf
        return self.ema_real, self.ema_fake

    def penalty(self, ctx: RegContext) -> tuple[Tensor, dict[str, float]]:
        # with_grad=False: reuses the main loss's pass (with or without input gradient).
        real = ctx.real(with_grad=False).logits
        fake = ctx.fake(with_grad=False).logits
        a_r, a_f = self.update_anchors(real, fake)
        reg = lecam_penalty(real, fake, a_r.to(real.dtype), a_f.to(fake.dtype))
        stats = {"lecam": float(reg.detach()), "lecam_ema_real": float(a_r), "lecam_ema_fake": float(a_f)}
        return reg * self.weight, stats

    def extra_state(self) -> dict[str, Tensor]:
        if self.ema_real is None or self.ema_fake is None:
            return {}
        return {"ema_real": self.ema_real.detach().cpu(), "ema_fake": self.ema_fake.detach().cpu()}

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        self.ema_real = state.get("ema_real")
        self.ema_fake = state.get("ema_fake")
