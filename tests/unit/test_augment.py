"""gan_core.augment: ADA pipe, AdaptiveP controller, DiffAugment, build_augment."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gan_core.augment import AdaAugment, AdaptiveP, DiffAugment, build_augment, diff_augment
from gan_core.config import AugmentConfig

GEOMETRIC = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
COLOUR = ("brightness", "contrast", "lumaflip", "hue", "saturation")


def only(*names: str, **kwargs: object) -> AdaAugment:
    """An AdaAugment with every multiplier 0 except `names`."""
    mults = {m: (1.0 if m in names else 0.0) for m in GEOMETRIC + COLOUR}
    return AdaAugment(**mults, **kwargs)  # type: ignore[arg-type]


def smooth_images(n: int = 8, res: int = 32, seed: int = 0) -> torch.Tensor:
    """Image-like inputs in [-1, 1]: low-frequency colour blobs."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1
    return nn.functional.interpolate(low, size=res, mode="bicubic", align_corners=False).clamp(-1, 1)


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    # tanh (not ReLU): the input-gradient then depends smoothly on every weight.
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh(), nn.Conv2d(4, 1, 3))


AUGMENTS = {
    "ada_p05": lambda: AdaAugment(p=0.5),
    "ada_p1": lambda: AdaAugment(p=1.0, antialias=True),
    "ada_p1_bilinear": lambda: AdaAugment(p=1.0, antialias=False),
    "ada_blit": lambda: only("xflip", "rotate90", "xint", p=1.0),
    "diffaugment": lambda: DiffAugment(),
}


@pytest.mark.parametrize("name", sorted(AUGMENTS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_and_dtype_kept(name: str, dtype: torch.dtype) -> None:
    x = smooth_images(4, 32).to(dtype)
    y = AUGMENTS[name]()(x)
    assert y.shape == x.shape and y.dtype == dtype
    assert torch.isfinite(y).all()


def test_ada_grayscale_and_non_square() -> None:
    x = smooth_images(4, 32)[:, :1]
    assert AdaAugment(p=1.0)(x).shape == x.shape
    x = smooth_images(4, 32)[..., :24]
    assert AdaAugment(p=1.0)(x).shape == x.shape


def test_ada_rejects_bad_channels() -> None:
    with pytest.raises(ValueError, match="channels"):
        AdaAugment(p=0.5)(torch.zeros(2, 4, 16, 16))


def test_p_zero_is_identity() -> None:
    x = smooth_images()
    aug = AdaAugment()  # p defaults to 0
    assert aug(x) is x
    assert AdaAugment(p=0.0, antialias=False)(x) is x


def test_p_buffer_is_a_scalar_in_the_state_dict() -> None:
    aug = AdaAugment(p=0.25)
    assert isinstance(aug.p, torch.Tensor) and aug.p.ndim == 0 and aug.p.dtype == torch.float32
    assert list(aug.state_dict()) == ["p"]  # the filter is a non-persistent constant
    other = AdaAugment()
    other.load_state_dict(aug.state_dict())
    assert float(other.p) == 0.25
    other.p.fill_(0.0)  # how the trainer writes AdaptiveP's result
    x = smooth_images()
    assert other(x) is x


def test_p_one_changes_images_and_keeps_range() -> None:
    torch.manual_seed(0)
    x = smooth_images(16, 32)
    y = AdaAugment(p=1.0)(x)
    changed = (y - x).flatten(1).abs().amax(dim=1) > 1e-3
    assert changed.all()
    # Colour transforms (contrast, saturation: log2-normal gains) may leave [-1, 1] as
    # in NVlabs, but not by much on average.
    assert y.abs().quantile(0.99) < 5 and y.mean().abs() < 0.5
    # Geometry alone only moves pixels: values stay in range (small filter overshoot).
    for antialias in (True, False):
        y = only(*GEOMETRIC, p=1.0, antialias=antialias)(x)
        assert y.abs().max() <= 1.1
        assert ((y - x).flatten(1).abs().amax(dim=1) > 1e-3).all()


def test_antialias_auto_is_bilinear_on_cpu() -> None:
    x = smooth_images(8, 32)
    torch.manual_seed(6)
    auto = AdaAugment(p=1.0)(x)
    torch.manual_seed(6)
    assert torch.equal(auto, AdaAugment(p=1.0, antialias=False)(x))
    torch.manual_seed(6)
    assert not torch.equal(auto, AdaAugment(p=1.0, antialias=True)(x))


@pytest.mark.parametrize("name", ["ada_p1", "ada_p1_bilinear", "ada_blit", "diffaugment"])
def test_double_backward_reaches_the_net(name: str) -> None:
    """R1-style penalty: grad of D(aug(x)) w.r.t. x with create_graph, then backward."""
    torch.manual_seed(1)
    net, aug = tiny_net(), AUGMENTS[name]()
    x = smooth_images(4, 32).requires_grad_(True)
    (grad_x,) = torch.autograd.grad(net(aug(x)).sum(), x, create_graph=True)
    assert torch.isfinite(grad_x).all() and grad_x.abs().sum() > 0
    grad_x.norm().backward()
    for conv in (net[0], net[2]):
        g = conv.weight.grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_xflip_only_flips_or_keeps() -> None:
    torch.manual_seed(2)
    x = smooth_images(32, 16)
    y = only("xflip", p=1.0)(x)
    same = (y == x).flatten(1).all(dim=1)
    flipped = (y == x.flip(-1)).flatten(1).all(dim=1)
    assert (same | flipped).all()
    assert same.any() and flipped.any()  # each with probability 1/2


def test_rotate90_only_is_an_exact_rotation() -> None:
    torch.manual_seed(3)
    x = smooth_images(16, 16)
    y = only("rotate90", p=1.0)(x)
    for i in range(len(x)):
        assert any(torch.equal(y[i], torch.rot90(x[i], k, dims=(1, 2))) for k in range(4))


def test_antialiased_resample_leaves_untransformed_samples_exact() -> None:
    """Samples whose transform is the identity pass the 2x-filtered resample unchanged
    (sym6 up/down is a perfect-reconstruction pair), borders included."""
    torch.manual_seed(4)
    x = smooth_images(16, 32)
    y = only("xfrac", p=0.5, antialias=True)(x)
    err = (y - x).flatten(1).abs().amax(dim=1)
    kept = err < 1e-5
    assert kept.any() and (~kept).any()


def test_deterministic_given_seed() -> None:
    x = smooth_images(8, 32)
    for make in (lambda: AdaAugment(p=0.7, antialias=True), lambda: AdaAugment(p=0.7), lambda: DiffAugment()):
        torch.manual_seed(123)
        a = make()(x)
        torch.manual_seed(123)
        b = make()(x)
        assert torch.equal(a, b)


def test_diff_augment_policies() -> None:
    torch.manual_seed(5)
    x = smooth_images(8, 32)
    assert diff_augment(x, "") is x
    y = diff_augment(x, "translation")
    # Integer shift with zero fill: every output value is an input value or 0.
    assert torch.isin(y, torch.cat([x.flatten(), torch.zeros(1)])).all()
    y = diff_augment(x, "cutout")
    zero_frac = (y == 0).all(dim=1).flatten(1).float().mean(dim=1)
    assert ((zero_frac > 0.05) & (zero_frac <= 0.25 + 1e-6)).all()  # a clipped 16x16 square
    assert not torch.equal(diff_augment(x, "color"), x)
    with pytest.raises(ValueError, match="valid"):
        DiffAugment("color,zoom")


def test_adaptive_p_rises_when_d_overfits() -> None:
    ctl = AdaptiveP(target=0.6, adjust_kimg=100.0)
    ctl.observe(torch.ones(8, 1) * 3.0)
    ctl.observe(torch.full((8, 1), 0.5, requires_grad=True))  # no graph is kept
    p = ctl.update(0.1, num_images=32)
    assert ctl.last_rt == 1.0
    assert p == pytest.approx(0.1 + 32 / 100_000)
    # The accumulator was reset: no observations, no change.
    assert ctl.update(p, num_images=32) == p


def test_adaptive_p_falls_and_clamps_at_zero() -> None:
    ctl = AdaptiveP(target=0.6, adjust_kimg=100.0)
    ctl.observe(-torch.ones(16, 1))
    assert ctl.update(0.5, num_images=1000) == pytest.approx(0.49)
    assert ctl.last_rt == -1.0
    ctl.observe(-torch.ones(16, 1))
    assert ctl.update(0.001, num_images=1000) == 0.0
    # Mixed signs: E[sign] = (3 - 1) / 4 = 0.5 < 0.6.
    ctl.observe(torch.tensor([[1.0], [2.0], [3.0], [-1.0]]))
    assert ctl.update(0.2, num_images=100) == pytest.approx(0.2 - 100 / 100_000)
    assert ctl.last_rt == 0.5


def test_build_augment() -> None:
    ada = build_augment(AugmentConfig(kind="ada", initial_p=0.2))
    assert isinstance(ada, AdaAugment) and float(ada.p) == pytest.approx(0.2)
    diff = build_augment(AugmentConfig(kind="diffaugment", diffaugment_policy="color,cutout"))
    assert isinstance(diff, DiffAugment) and diff.policy == "color,cutout"
    assert isinstance(build_augment(AugmentConfig(kind="none")), nn.Identity)
    with pytest.raises(ValueError, match="ada, diffaugment, none"):
        build_augment(AugmentConfig(kind="mixup"))
