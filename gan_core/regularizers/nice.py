"""NICE: NoIse-modulated Consistency rEgularization (Ni et al.), from the abstract.

Only the abstract is available (../shared/papers/related-abstracts.txt) and
there is no official code; every choice below is ours and is listed in
docs/regularizers.md. The abstract says: (1) adaptive *multiplicative* noise
modulates D's latent features, which curbs D's overfitting; (2) that raises
D's gradient norm, so (3) D is constrained to be *consistent for the same input
under different noise modulations*.

As implemented, at every D step where it is due:

  * noise: forward hooks on D's intermediate blocks (StyleGAN2: `b{res}` for
    res <= max_res, i.e. the 8x8 and 4x4 feature maps with max_res=16) multiply
    each block output elementwise by `1 + sigma * N(0, 1)`, fresh per forward;
  * sigma is steered like ADA's p by D's overfitting signal r_t = E[sign(D(x_real))]
    on the clean real logits of this step:
        sigma <- clip(sigma + sign(r_t - target) * N_img / (adjust_kimg * 1000), 0, sigma_max)
    with N_img = batch * interval (images since the last update), updated after the
    penalty of the step is computed (ADA's order); sigma starts at 0;
  * consistency: two noisy passes per side (independent noise), squared difference of
    D's logits: C = mean((D_e1(x_r) - D_e2(x_r))^2) + mean((D_e1(x_f) - D_e2(x_f))^2);
    with `clean_ref` = 1 the second pass is the clean one the main loss already ran
    (D_e2 := D, two extra passes instead of four);
  * noisy adversarial loss (`noisy_adv` = 1): D's adversarial loss is computed on the
    noise-modulated D. The trainer's main loss uses the clean logits, so the penalty
    carries `(L_adv(noisy) - L_adv(clean)) / m` with m = `lazy_multiplier` (the interval, unless
    scale_by_interval is off); after the trainer's `* m` D's objective on this step is exactly
    L_adv(noisy) + m * weight * C.
    With `noisy_adv` = 0 only the consistency term is added.

Returned loss: `weight * C + noisy_adv * (L_adv(D_e1) - L_adv(D_clean)) / lazy_multiplier`.
Cost: four extra D passes (two with clean_ref) when sigma > 0, none while sigma == 0.
The generator step is not modulated (that would need a trainer hook).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import DRegularizer, RegContext, register

LossFn = Callable[[Tensor, Tensor], Tensor]


def logistic_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """The trainer's D loss (`gan_core.training.losses.d_logistic_loss`), repeated here to avoid an import cycle."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def d_loss_for(ctx: RegContext) -> LossFn:
    """The D loss the trainer uses: `ctx.d_loss` if the trainer sets one (e.g. hinge), else the logistic loss."""
    return getattr(ctx, "d_loss", None) or logistic_d_loss


def noise_targets(D: nn.Module, max_res: float) -> list[nn.Module]:
    """The modules whose outputs get multiplicative noise.

    A D may list them itself with a `nice_targets(max_res)` method (the SNGAN/BigGAN ResNet D:
    its blocks whose input resolution is <= max_res); otherwise the StyleGAN2 layout is used:
    blocks `b{res}` for res in `D.block_resolutions`, res <= max_res.
    """
    if hasattr(D, "nice_targets"):
        mods = list(D.nice_targets(max_res))
    else:
        resolutions = getattr(D, "block_resolutions", None)
        if resolutions is None:
            raise ValueError(
                f"nice: cannot find intermediate blocks in {type(D).__name__}; it needs `block_resolutions` "
                "with blocks `b{res}` (StyleGAN2 layout) or a `nice_targets(max_res)` method"
            )
        mods = [getattr(D, f"b{r}") for r in resolutions if r <= max_res and hasattr(D, f"b{r}")]
    if not mods:
        raise ValueError(f"nice: no discriminator block at resolution <= max_res={max_res:g}; raise max_res")
    return mods


@contextmanager
def feature_noise(modules: list[nn.Module], noise: Callable[[Tensor], Tensor]) -> Iterator[None]:
    """While active, every output `y` of `modules` becomes `y * noise(y)` (fresh noise per call)."""

    def hook(_mod: nn.Module, _inp: tuple, out: Tensor) -> Tensor:
        return out * noise(out)

    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@register
class NICE(DRegularizer):
    name = "nice"
    description = (
        "NICE (from the abstract): adaptive multiplicative Gaussian noise 1 + sigma*N(0,1) on D's blocks at "
        "res <= max_res, sigma steered by E[sign(D(real))] towards target; D's adversarial loss on the noisy D "
        "(noisy_adv=1) plus weight * consistency of D's logits under two noise draws."
    )
    # target 0.6: ADA's (NVlabs train.py); adjust_kimg 100: our ADA speed (config.AugmentConfig.ada_kimg);
    # sigma_max, max_res, noisy_adv, clean_ref: ours (abstract only, no official code; docs/regularizers.md)
    params = {"target": 0.6, "adjust_kimg": 100.0, "sigma_max": 1.0, "max_res": 16.0, "noisy_adv": 1.0,
              "clean_ref": 0.0}
    default_weight = 1.0  # ours, untuned
    default_interval = 1  # ours: sigma adapts every step, like ADA's p

    def __init__(self, weight: float, interval: int = 1, **params: float) -> None:
        super().__init__(weight, interval, **params)
        hp = self.hparams
        if hp["adjust_kimg"] <= 0 or hp["sigma_max"] < 0 or hp["max_res"] < 4:
            raise ValueError("nice: adjust_kimg must be > 0, sigma_max >= 0 and max_res >= 4")
        for flag in ("noisy_adv", "clean_ref"):
            if hp[flag] not in (0.0, 1.0):
                raise ValueError(f"nice: {flag} must be 0 or 1, got {hp[flag]}")
        self.sigma = 0.0

    def _noise(self, like: Tensor) -> Tensor:
        """The multiplicative factor for one feature map: 1 + sigma * N(0, 1), elementwise."""
        return 1.0 + self.sigma * torch.randn_like(like)

    def adapt(self, real_logits: Tensor, n_img: int) -> float:
        """One ADA-style step of sigma from the overfitting signal r_t = E[sign(D(x_real))]."""
        hp = self.hparams
        rt = float(torch.sign(real_logits.detach()).mean())
        step = n_img / (hp["adjust_kimg"] * 1000)
        direction = (rt > hp["target"]) - (rt < hp["target"])
        self.sigma = min(max(self.sigma + direction * step, 0.0), hp["sigma_max"])
        return rt

    def penalty(self, ctx: RegContext) -> tuple[Tensor, dict[str, float]]:
        real_out, fake_out = ctx.real(with_grad=False), ctx.fake(with_grad=False)
        real, fake = real_out.logits, fake_out.logits
        sigma = self.sigma
        if sigma > 0:
            targets = noise_targets(ctx.D, self.hparams["max_res"])
            x_r, x_f = ctx.real_aug.detach(), ctx.fake_aug.detach()
            with feature_noise(targets, self._noise):
                if self.hparams["clean_ref"]:  # consistency with the clean pass the main loss already ran
                    r1, f1 = ctx.d_real(x_r), ctx.d_fake(x_f)
                    r2, f2 = real, fake
                else:  # two independent noise draws per side
                    r1, r2 = ctx.d_real(x_r), ctx.d_real(x_r)
                    f1, f2 = ctx.d_fake(x_f), ctx.d_fake(x_f)
            cons = (r1 - r2).square().mean() + (f1 - f2).square().mean()
            loss = cons * self.weight
            if self.hparams["noisy_adv"]:
                d_loss = d_loss_for(ctx)
                loss = loss + (d_loss(r1, f1) - d_loss(real, fake)) / self.lazy_multiplier
        else:  # no noise yet: noisy == clean, nothing to add
            cons = loss = real.new_zeros(())
        rt = self.adapt(real, real.shape[0] * self.interval)
        return loss, {"nice_consistency": float(cons.detach()), "nice_sigma": sigma, "nice_rt": rt}

    def extra_state(self) -> dict[str, Tensor]:
        return {"sigma": torch.tensor(self.sigma, dtype=torch.float64)}

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        if "sigma" in state:
            self.sigma = float(state["sigma"])
