"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
Training"), following the authors' PyTorch code: the same ops and ranges, vectorised
with gathers and masks. Applied with probability 1 to every image D sees."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["DiffAugment", "diff_augment", "DIFFAUGMENT_POLICIES"]


def _rand(x: Tensor) -> Tensor:
    return torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device)


def rand_brightness(x: Tensor) -> Tensor:
    return x + (_rand(x) - 0.5)  # shift in [-0.5, 0.5)


def rand_saturation(x: Tensor) -> Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_rand(x) * 2) + mean  # scale chroma by [0, 2)


def rand_contrast(x: Tensor) -> Tensor:
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (_rand(x) + 0.5) + mean  # scale by [0.5, 1.5)


def rand_translation(x: Tensor, ratio: float = 0.125) -> Tensor:
    """Integer shift by up to `ratio` of each side, zero-filled."""
    n, c, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sh, sh + 1, (n, 1), device=x.device)
    tx = torch.randint(-sw, sw + 1, (n, 1), device=x.device)
    # Index into a 1-pixel zero border; clamping sends out-of-range reads to it.
    xp = nn.functional.pad(x, [1, 1, 1, 1])
    rows = (torch.arange(h, device=x.device) + ty + 1).clamp(0, h + 1)  # [n, h]
    cols = (torch.arange(w, device=x.device) + tx + 1).clamp(0, w + 1)  # [n, w]
    xp = xp.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2))
    return xp.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def rand_cutout(x: Tensor, ratio: float = 0.5) -> Tensor:
    """Zero one square of `ratio` x the image size, centred anywhere (may be clipped)."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device) - ch // 2
    ox = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device) - cw // 2
    ys = torch.arange(h, device=x.device)[:, None]
    xs = torch.arange(w, device=x.device)
    inside = (ys >= oy) & (ys < oy + ch) & (xs >= ox) & (xs < ox + cw)  # [n, h, w]
    return x * (~inside).to(x.dtype)[:, None]


DIFFAUGMENT_POLICIES: dict[str, list[Callable[[Tensor], Tensor]]] = {
    "color": [rand_brightness, rand_saturation, rand_contrast],
    "translation": [rand_translation],
    "cutout": [rand_cutout],
}


def _parse_policy(policy: str) -> list[str]:
    names = [p.strip() for p in policy.split(",") if p.strip()]
    unknown = [p for p in names if p not in DIFFAUGMENT_POLICIES]
    if unknown:
        raise ValueError(f"unknown DiffAugment policy {unknown}; valid: {', '.join(DIFFAUGMENT_POLICIES)}")
    return names


def diff_augment(x: Tensor, policy: str = "color,translation,cutout") -> Tensor:
    """Apply the comma-separated `policy` to NCHW images; "" is the identity."""
    for name in _parse_policy(policy):
        for fn in DIFFAUGMENT_POLICIES[name]:
            x = fn(x)
    return x


class DiffAugment(nn.Module):
    """Module wrapper of `diff_augment` (no parameters, no state)."""

    def __init__(self, policy: str = "color,translation,cutout") -> None:
        super().__init__()
        _parse_policy(policy)  # fail at construction, not at the first D step
        self.policy = policy

    def forward(self, x: Tensor) -> Tensor:
        return diff_augment(x, self.policy)

    def extra_repr(self) -> str:
        return f"policy={self.policy!r}"
