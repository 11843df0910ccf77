"""R1: zero-centred gradient penalty on real images (Mescheder et al. 2018)."""

from __future__ import annotations

from torch import Tensor

from .base import DRegularizer, RegContext, register


@register
class R1(DRegularizer):
    """`weight / 2 * mean(||grad_x D(x_real)||^2)`; `weight` is NVlabs' r1_gamma."""

    name = "r1"
    description = "Zero-centred gradient penalty on real images; weight is gamma."
    # weight / interval suggestions: gan_core/regularizers/__init__.py _SUGGESTED (NVlabs paper256 gamma 1, every 16)
    needs_real_grad = True

    def penalty(self, ctx: RegContext) -> tuple[Tensor, dict[str, float]]:
        sq = ctx.real().norms.square()
        r1 = sq.mean()
        return r1 * (self.weight / 2), {"r1": r1.detach()}  # a tensor: read once per tick, no sync per step
