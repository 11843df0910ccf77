"""R2: zero-centred gradient penalty on generated images (Mescheder et al. 2018)."""

from __future__ import annotations

from torch import Tensor

from .base import DRegularizer, RegContext, register


@register
class R2(DRegularizer):
    """`weight / 2 * mean(||grad_x D(x_fake)||^2)` on the augmented fakes D saw (R1's twin)."""

    name = "r2"
    description = "Zero-centred gradient penalty on generated images: weight/2 * mean(||grad D(x_fake)||^2)."
    needs_fake_grad = True
    default_weight = 1.0  # ours: R1's suggested gamma (no canonical R2 weight; Mescheder et al. 2018 define it)
    default_interval = 16  # NVlabs D_reg_interval, as R1

    def penalty(self, ctx: RegContext) -> tuple[Tensor, dict[str, float]]:
        r2 = ctx.fake().norms.square().mean()
        return r2 * (self.weight / 2), {"r2": r2.detach()}  # a tensor: read once per tick, no sync per step
