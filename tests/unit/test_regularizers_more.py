"""LeCam, R2, GP-1, DRAGAN, NICE and MaskedGAN against hand computations on tiny discriminators.

QuadraticD: D(x) = c * ||x||^2 per sample, so grad_x D = 2 c x and ||grad|| = 2 |c| ||x||.
LinearD:    D(x) = c * sum(x), so D of a spectrally masked image is c * (its DC coefficient).
NoisyD:     an Identity block `b2` (NICE hooks it) then c * sum, so D_eps(x) = c * sum(x * eps).
Every value and every d(penalty)/dc below is written out by hand.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gan_core.config import NetworkConfig
from gan_core.networks import Discriminator
from gan_core.regularizers import (
    DRAGAN,
    GP1,
    NICE,
    R1,
    R2,
    REGISTRY,
    LeCam,
    MaskedGAN,
    RegContext,
    build_regularizers,
    describe_regularizers,
)
from gan_core.regularizers.gradient_penalties import dragan_perturb, wgan_gp_interpolates
from gan_core.regularizers.maskedgan import radial_bands, shifted_spatial_mask, spectral_mask
from gan_core.regularizers.nice import feature_noise, noise_targets


class QuadraticD(nn.Module):
    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor(float(c)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.c * x.flatten(1).square().sum(1)).unsqueeze(1)


class LinearD(nn.Module):
    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor(float(c)))
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return (self.c * x.flatten(1).sum(1)).unsqueeze(1)


class NoisyD(nn.Module):
    block_resolutions = [2]

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor(float(c)))
        self.b2 = nn.Identity()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return (self.c * self.b2(x).flatten(1).sum(1)).unsqueeze(1)


def _batch(values: list[float]) -> torch.Tensor:
    """Images [N, 1, 2, 2] with one non-zero pixel: ||x|| = |v| and ||x||^2 = v^2."""
    x = torch.zeros(len(values), 1, 2, 2)
    x[:, 0, 0, 0] = torch.tensor(values)
    return x


def _ctx(D, real, fake):
    return RegContext(D, real, fake, create_graph=True)


# ----------------------------------------------------------------------------------- LeCam


def test_lecam_value_anchors_and_gradient() -> None:
    c, lam, decay = 0.5, 0.3, 0.9
    D = QuadraticD(c)
    reg = LeCam(weight=lam, decay=decay)
    # Step 1: logits real = 0.5 * [1, 4, 9] = [0.5, 2, 4.5], fake = 0.5 * [4, 0] = [2, 0].
    loss, stats = reg.penalty(_ctx(D, _batch([1, 2, 3]), _batch([2, 0])))
    a_r, a_f = 7 / 3, 1.0  # the first update sets the anchors to the batch means
    expected = (0 + 1.0**2 + 3.5**2) / 3 + ((a_r - 2) ** 2 + (a_r - 0) ** 2) / 2
    assert loss.item() == pytest.approx(lam * expected, rel=1e-6)
    assert stats["lecam"] == pytest.approx(expected, rel=1e-6)
    assert stats["lecam_ema_real"] == pytest.approx(a_r) and stats["lecam_ema_fake"] == pytest.approx(a_f)

    # Step 2: the anchors blend with this batch first (decay), then the penalty uses them as constants.
    D.zero_grad()
    s_r, s_f = torch.tensor([4.0, 1.0]), torch.tensor([9.0, 1.0])  # ||x||^2
    loss, stats = reg.penalty(_ctx(D, _batch([2, 1]), _batch([3, 1])))
    a_r = decay * a_r + (1 - decay) * (c * s_r).mean().item()
    a_f = decay * a_f + (1 - decay) * (c * s_f).mean().item()
    assert stats["lecam_ema_real"] == pytest.approx(a_r) and stats["lecam_ema_fake"] == pytest.approx(a_f)
    hr, hf = F.relu(c * s_r - a_f), F.relu(a_r - c * s_f)
    assert loss.item() == pytest.approx(lam * float(hr.square().mean() + hf.square().mean()), rel=1e-6)
    loss.backward()
    # d/dc: mean(2 relu(c s_r - a_F) s_r) - mean(2 relu(a_R - c s_f) s_f); no gradient through the anchors.
    grad = lam * float((2 * hr * s_r).mean() - (2 * hf * s_f).mean())
    assert D.c.grad.item() == pytest.approx(grad, rel=1e-5)


def test_lecam_reuses_the_main_loss_forward_pass() -> None:
    D = NoisyD(1.0)
    ctx = _ctx(D, _batch([1, 2]), _batch([3, 4]))
    real, fake = ctx.real(with_grad=True), ctx.fake(with_grad=False)  # what the trainer computes first
    calls = D.calls
    LeCam(weight=1.0).penalty(ctx)
    assert D.calls == calls  # no extra D pass
    assert ("real", False) not in ctx._cache and ctx.real(with_grad=False) is real and ctx.fake(False) is fake


def test_lecam_state_round_trip_gives_identical_next_step() -> None:
    D = QuadraticD(0.7)
    a, b = LeCam(weight=0.3), LeCam(weight=0.3)
    assert a.extra_state() == {}
    a.penalty(_ctx(D, _batch([1, 2]), _batch([3, 0])))
    a.penalty(_ctx(D, _batch([2, 2]), _batch([1, 0])))
    b.load_extra_state(a.extra_state())
    la, _ = a.penalty(_ctx(D, _batch([0, 3]), _batch([1, 1])))
    lb, _ = b.penalty(_ctx(D, _batch([0, 3]), _batch([1, 1])))
    assert torch.equal(la, lb) and torch.equal(a.ema_real, b.ema_real)
    with pytest.raises(ValueError, match="decay"):
        LeCam(weight=1, decay=1.0)


# --------------------------------------------------------------------------- R2, GP-1, DRAGAN


def test_r2_value_and_gradient() -> None:
    c, gamma = 0.5, 10.0
    D = QuadraticD(c)
    loss, stats = R2(weight=gamma).penalty(_ctx(D, _batch([0, 0]), _batch([1, 3])))
    # ||grad||^2 = 4 c^2 ||x||^2 = [1, 9]; gamma / 2 * mean = 25.
    assert loss.item() == pytest.approx(25.0) and stats["r2"] == pytest.approx(5.0)
    loss.backward()
    assert D.c.grad.item() == pytest.approx(gamma / 2 * 8 * c * (1 + 9) / 2)  # d/dc of gamma/2 * 4c^2 mean(|x|^2)


def test_r1_and_r2_share_one_context_without_recomputing() -> None:
    D = NoisyD(1.0)
    ctx = _ctx(D, _batch([1]), _batch([2]))
    R1(weight=1).penalty(ctx)
    R2(weight=1).penalty(ctx)
    calls = D.calls
    R2(weight=1).penalty(ctx)
    assert D.calls == calls == 2


def _one_centred(D, x_hat, c, w):
    norms = 2 * abs(c) * x_hat.flatten(1).norm(dim=1)  # ||grad|| of the quadratic D
    value = w * ((norms - 1) ** 2).mean()
    grad = w * (2 * (norms - 1) * 2 * x_hat.flatten(1).norm(dim=1)).mean()  # d/dc for c > 0
    return value, grad


def test_gp1_on_interpolates_value_and_gradient() -> None:
    c, w = 0.4, 10.0
    D = QuadraticD(c)
    real, fake = _batch([1.0, 2.0, -1.0]), _batch([3.0, 0.5, 2.0])
    torch.manual_seed(5)
    loss, stats = GP1(weight=w).penalty(_ctx(D, real, fake))
    torch.manual_seed(5)
    eps = torch.rand(3, 1, 1, 1)  # the one draw GP1 makes
    x_hat = eps * real + (1 - eps) * fake
    value, grad = _one_centred(D, x_hat, c, w)
    assert loss.item() == pytest.approx(value.item(), rel=1e-5)
    assert stats["gp1"] == pytest.approx(value.item() / w, rel=1e-5)
    loss.backward()
    assert D.c.grad.item() == pytest.approx(grad.item(), rel=1e-5)
    # Interpolates lie on the segment between the paired real and fake samples.
    torch.manual_seed(5)
    pts = wgan_gp_interpolates(real, fake)
    lo, hi = torch.minimum(real, fake), torch.maximum(real, fake)
    assert bool(((pts >= lo - 1e-6) & (pts <= hi + 1e-6)).all())


@pytest.mark.parametrize("interpolate", [1.0, 0.0])
def test_dragan_perturbed_reals_value_and_gradient(interpolate: float) -> None:
    c, w, scale = 0.3, 10.0, 0.5
    D = QuadraticD(c)
    real = torch.tensor([[[[1.0, -2.0], [0.5, 0.0]]], [[[2.0, 1.0], [-1.0, 3.0]]]])
    torch.manual_seed(11)
    loss, stats = DRAGAN(weight=w, interpolate=interpolate).penalty(_ctx(D, real, real.flip(0)))
    torch.manual_seed(11)
    std = real.flatten().std(unbiased=False)  # population std over the whole batch, as numpy's
    delta = scale * std * torch.rand_like(real)
    x_hat = real + (torch.rand(2, 1, 1, 1) * delta if interpolate else delta)
    value, grad = _one_centred(D, x_hat, c, w)
    assert loss.item() == pytest.approx(value.item(), rel=1e-5)
    assert stats["dragan"] == pytest.approx(value.item() / w, rel=1e-5)
    loss.backward()
    assert D.c.grad.item() == pytest.approx(grad.item(), rel=1e-5)
    torch.manual_seed(0)
    noise = dragan_perturb(real, scale, bool(interpolate)) - real
    assert bool((noise >= 0).all() and (noise <= scale * std + 1e-6).all())  # U[0,1) noise: one-sided


# ------------------------------------------------------------------------------------- NICE


def test_nice_value_gradient_and_loss_substitution() -> None:
    c, w, interval = 0.5, 2.0, 2
    D = NoisyD(c)
    real, fake = _batch([1.0, -2.0]), _batch([0.5, 3.0])
    reg = NICE(weight=w, interval=interval)
    reg.sigma = 0.3
    e = [torch.full((2, 1, 2, 2), v) for v in (1.5, 0.5, 2.0, 1.0)]  # noise for r1, r2, f1, f2 in call order
    queue = iter(e)
    reg._noise = lambda like: next(queue)
    ctx = _ctx(D, real, fake)
    main = F.softplus(-ctx.real(False).logits).mean() + F.softplus(ctx.fake(False).logits).mean()  # trainer's
    loss, stats = reg.penalty(ctx)

    s_r, s_f = real.flatten(1).sum(1), fake.flatten(1).sum(1)  # sum(x * eps) = eps * sum(x) for constant eps
    r1, r2, f1, f2 = c * 1.5 * s_r, c * 0.5 * s_r, c * 2.0 * s_f, c * 1.0 * s_f
    cons = ((r1 - r2) ** 2).mean() + ((f1 - f2) ** 2).mean()
    adv_noisy = F.softplus(-r1).mean() + F.softplus(f1).mean()
    adv_clean = F.softplus(-c * s_r).mean() + F.softplus(c * s_f).mean()
    assert stats["nice_consistency"] == pytest.approx(cons.item(), rel=1e-6)
    assert loss.item() == pytest.approx((w * cons + (adv_noisy - adv_clean) / interval).item(), rel=1e-6)
    # The trainer adds penalty * interval to its clean loss: D's objective becomes the noisy one.
    total = main + loss * interval
    assert total.item() == pytest.approx((adv_noisy + interval * w * cons).item(), rel=1e-6)
    total.backward()
    d_cons = 2 * c * (((1.5 - 0.5) * s_r) ** 2).mean() + 2 * c * (((2.0 - 1.0) * s_f) ** 2).mean()
    d_adv = (-1.5 * s_r * torch.sigmoid(-r1)).mean() + (2.0 * s_f * torch.sigmoid(f1)).mean()
    assert D.c.grad.item() == pytest.approx((d_adv + interval * w * d_cons).item(), rel=1e-5)
    assert not D.b2._forward_hooks  # hooks are gone after the penalty


def test_nice_consistency_only_and_no_work_without_noise() -> None:
    D = NoisyD(1.0)
    reg = NICE(weight=1.0, noisy_adv=0.0)
    ctx = _ctx(D, _batch([1.0]), _batch([2.0]))
    ctx.real(False), ctx.fake(False)
    calls = D.calls
    loss, stats = reg.penalty(ctx)  # sigma starts at 0: noisy == clean, no extra pass
    assert loss.item() == 0.0 and D.calls == calls and stats["nice_sigma"] == 0.0
    reg.sigma = 0.5
    e = iter([torch.full((1, 1, 2, 2), v) for v in (1.0, 3.0, 2.0, 2.0)])
    reg._noise = lambda like: next(e)
    loss, _ = reg.penalty(_ctx(D, _batch([1.0]), _batch([2.0])))
    assert loss.item() == pytest.approx((1.0 - 3.0) ** 2 + 0.0)  # consistency only
    # clean_ref: one noisy pass per side against the clean logits.
    reg = NICE(weight=1.0, noisy_adv=0.0, clean_ref=1.0)
    reg.sigma = 0.5
    e = iter([torch.full((1, 1, 2, 2), v) for v in (3.0, 0.5)])
    reg._noise = lambda like: next(e)
    D.calls = 0
    loss, _ = reg.penalty(_ctx(D, _batch([1.0]), _batch([2.0])))
    assert D.calls == 4  # two clean (the context) + two noisy
    assert loss.item() == pytest.approx((3.0 * 1 - 1) ** 2 + (0.5 * 2 - 2) ** 2)
    loss.backward()
    assert D.c.grad.item() == pytest.approx(2 * 1.0 * ((3.0 - 1) ** 2 * 1 + (0.5 - 1) ** 2 * 4))


def test_nice_sigma_follows_the_overfitting_signal() -> None:
    D = NoisyD(1.0)  # positive inputs: logits > 0, sign = +1
    reg = NICE(weight=1.0, interval=4, adjust_kimg=1.0, sigma_max=0.02, target=0.6)
    reg.penalty(_ctx(D, _batch([1.0, 1.0]), _batch([1.0, 1.0])))
    assert reg.sigma == pytest.approx(2 * 4 / 1000)  # r_t = 1 > 0.6: up by N_img / (adjust_kimg * 1000)
    for _ in range(5):
        reg.penalty(_ctx(D, _batch([1.0, 1.0]), _batch([1.0, 1.0])))
    assert reg.sigma == pytest.approx(0.02)  # clipped at sigma_max
    Dn = NoisyD(-1.0)  # r_t = -1 < 0.6: down, clipped at 0
    for _ in range(5):
        _, stats = reg.penalty(_ctx(Dn, _batch([1.0, 1.0]), _batch([1.0, 1.0])))
    assert reg.sigma == 0.0 and stats["nice_rt"] == -1.0
    other = NICE(weight=1.0)
    reg.sigma = 0.123456789
    other.load_extra_state(reg.extra_state())
    assert other.sigma == reg.sigma


def test_nice_hooks_the_stylegan2_blocks_and_cleans_up() -> None:
    torch.manual_seed(0)
    D = Discriminator(NetworkConfig(resolution=32, channel_base=512, channel_max=32))
    assert noise_targets(D, 16) == [D.b16, D.b8]
    assert noise_targets(D, 32) == [D.b32, D.b16, D.b8]
    x = torch.randn(4, 3, 32, 32)
    clean = D(x)
    with feature_noise(noise_targets(D, 16), lambda y: 1 + 0.5 * torch.randn_like(y)):
        noisy = D(x)
    assert not torch.allclose(noisy, clean)
    with pytest.raises(RuntimeError):
        with feature_noise([D.b8], lambda y: 1 + 0 * y):
            raise RuntimeError("boom")
    assert not D.b8._forward_hooks and torch.equal(D(x), clean)
    with pytest.raises(ValueError, match="max_res"):
        noise_targets(D, 4)
    with pytest.raises(ValueError, match="block_resolutions"):
        noise_targets(QuadraticD(1.0), 16)


# -------------------------------------------------------------------------------- MaskedGAN


def test_shifted_spatial_mask_by_hand() -> None:
    drop = torch.zeros(2, 3, 3, dtype=torch.bool)
    drop[0, 0, 0] = True  # sample 0: cell (0, 0) with the grid shifted down by 1
    drop[1, 1, 1] = True  # sample 1: cell (1, 1), no shift
    m = shifted_spatial_mask(drop, torch.tensor([[1, 0], [0, 0]]), cell=2, h=4, w=4)
    exp0 = torch.ones(4, 4)
    exp0[0, 0:2] = 0  # rows with (y + 1) // 2 == 0 -> y = 0; cols x // 2 == 0 -> x in {0, 1}
    exp1 = torch.ones(4, 4)
    exp1[2:4, 2:4] = 0
    assert torch.equal(m[0, 0], exp0) and torch.equal(m[1, 0], exp1)


def test_drawn_spatial_masks_have_the_ratio_and_are_patchwise() -> None:
    reg = MaskedGAN(weight=1.0, patches=4, spatial_ratio=0.4)
    torch.manual_seed(3)
    mask, band = reg.draw_masks(6, 16, 16)
    torch.manual_seed(3)
    shifts = torch.randint(0, 4, (6, 2))
    assert mask.shape == (6, 1, 16, 16) and set(mask.unique().tolist()) <= {0.0, 1.0}
    g = 5  # 4 cells per side + 1 for the shift
    for i in range(6):
        sy, sx = shifts[i].tolist()
        padded = torch.full((g * 4, g * 4), -1.0)
        padded[sy:sy + 16, sx:sx + 16] = mask[i, 0]
        cells = padded.reshape(g, 4, g, 4).permute(0, 2, 1, 3).reshape(g * g, 16)
        for cell in cells:  # every visible part of a cell is all kept or all masked
            vis = cell[cell >= 0]
            assert vis.numel() == 0 or len(vis.unique()) == 1
    assert band.shape == (6,) and bool(((band >= 0) & (band < 8)).all())


def test_spectral_bands_partition_the_spectrum() -> None:
    bands = radial_bands(8, 8, 4)
    assert bands[0, 0] == 0 and bands.max() == 3 and bands.min() == 0
    x = torch.randn(2, 3, 8, 8)
    removed = sum(x - spectral_mask(x, bands, torch.tensor([k, k])) for k in range(4))
    assert torch.allclose(removed, x, atol=1e-5)  # each coefficient lies in exactly one band
    const = torch.full((1, 3, 8, 8), 0.7)
    assert torch.allclose(spectral_mask(const, bands, torch.tensor([0])), torch.zeros_like(const), atol=1e-6)
    assert torch.allclose(spectral_mask(const, bands, torch.tensor([2])), const, atol=1e-6)


def test_band_probabilities_adapt_to_the_real_fake_gap() -> None:
    reg = MaskedGAN(weight=1.0, bands=4, decay=0.5)
    assert torch.allclose(reg.band_probabilities(), torch.full((4,), 0.25))
    torch.manual_seed(0)
    real = torch.randn(4, 3, 16, 16)  # white noise: power in every band
    fake = F.avg_pool2d(torch.randn(4, 3, 4, 4), 1).repeat_interleave(4, 2).repeat_interleave(4, 3)  # blocky
    bands = radial_bands(16, 16, 4)
    reg.update_spectrum(real, fake, bands)
    p = reg.band_probabilities()
    assert p.sum().item() == pytest.approx(1.0) and int(p.argmax()) >= 2  # high bands differ most
    gap = (reg.log_power_real - reg.log_power_fake).abs()
    assert torch.allclose(p, torch.softmax(gap, 0))
    before = reg.log_power_real.clone()
    reg.update_spectrum(fake, fake, bands)  # EMA: half old, half new
    from gan_core.regularizers.maskedgan import band_log_power

    assert torch.allclose(reg.log_power_real, 0.5 * before + 0.5 * band_log_power(fake, bands, 4), atol=1e-6)
    other = MaskedGAN(weight=1.0, bands=4)
    other.load_extra_state(reg.extra_state())
    assert torch.equal(other.band_probabilities(), reg.band_probabilities())


@pytest.mark.parametrize("band", [0, 2])
def test_maskedgan_value_and_gradient_on_a_linear_d(band: int) -> None:
    c, w, sw, fw = 0.2, 1.5, 0.5, 0.25
    D = LinearD(c)
    torch.manual_seed(1)
    real, fake = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    mask = torch.ones(2, 1, 8, 8)
    mask[:, :, :4, :4] = 0
    reg = MaskedGAN(weight=w, bands=4, spatial_weight=sw, spectral_weight=fw)
    reg.draw_masks = lambda n, h, w_: (mask[:n], torch.full((n,), band))
    loss, stats = reg.penalty(_ctx(D, real, fake))
    # Spatial: D sums the kept pixels. Spectral: sum(x) is the DC coefficient, which lies in band 0,
    # so masking band 0 makes every logit 0 and masking any other band leaves sum(x) unchanged.
    s_r, s_f = (real * mask).flatten(1).sum(1), (fake * mask).flatten(1).sum(1)
    t_r = torch.zeros(2) if band == 0 else real.flatten(1).sum(1)
    t_f = torch.zeros(2) if band == 0 else fake.flatten(1).sum(1)
    l_sp = F.softplus(-c * s_r).mean() + F.softplus(c * s_f).mean()
    l_fr = F.softplus(-c * t_r).mean() + F.softplus(c * t_f).mean()
    assert stats["maskedgan_spatial"] == pytest.approx(l_sp.item(), rel=1e-5)
    assert stats["maskedgan_spectral"] == pytest.approx(l_fr.item(), rel=1e-4, abs=1e-6)
    assert loss.item() == pytest.approx(w * (sw * l_sp + fw * l_fr).item(), rel=1e-5)
    loss.backward()
    d_sp = (-s_r * torch.sigmoid(-c * s_r)).mean() + (s_f * torch.sigmoid(c * s_f)).mean()
    d_fr = (-t_r * torch.sigmoid(-c * t_r)).mean() + (t_f * torch.sigmoid(c * t_f)).mean()
    assert D.c.grad.item() == pytest.approx(w * (sw * d_sp + fw * d_fr).item(), rel=1e-4, abs=1e-6)
    # Balanced: real sample i and fake sample i were masked identically.
    masked_r, masked_f = D.inputs[0], D.inputs[1]
    assert torch.equal(masked_r == 0, masked_f == 0)


def test_maskedgan_masks_real_and_fake_alike_when_drawn() -> None:
    D = LinearD(1.0)
    ones = torch.ones(4, 3, 16, 16)
    torch.manual_seed(7)
    MaskedGAN(weight=1.0, patches=4, spatial_ratio=0.5).penalty(_ctx(D, ones, ones.clone()))
    spatial_r, spatial_f, spectral_r, spectral_f = D.inputs
    assert torch.equal(spatial_r, spatial_f) and torch.allclose(spectral_r, spectral_f)
    assert 0 < float((spatial_r == 0).float().mean()) < 1


# -------------------------------------------------------------------- combinations, registry


@pytest.mark.parametrize("names", [("diggan", "lecam"), ("diggan", "r1"), ("r1", "r2", "gp1", "dragan", "lecam")])
def test_combined_penalties_add_up_and_share_the_context(names) -> None:
    D = QuadraticD(0.6)
    real, fake = _batch([1.0, 2.0, 0.5]), _batch([2.0, 1.5, 1.0])
    cfgs = [{"name": n, "weight": 2.0, "interval": 1} for n in names]
    torch.manual_seed(0)
    ctx = _ctx(D, real, fake)
    together = [reg.penalty(ctx)[0] for reg in build_regularizers(cfgs)]
    torch.manual_seed(0)
    alone = [reg.penalty(_ctx(D, real, fake))[0] for reg in build_regularizers(cfgs)]
    for a, b, n in zip(together, alone, names):
        assert a.item() == pytest.approx(b.item(), rel=1e-6), n
    sum(together).backward()
    assert D.c.grad is not None and math.isfinite(D.c.grad.item())


def test_registry_lists_every_regularizer_with_defaults() -> None:
    expected = {"diggan", "r1", "r2", "gp1", "dragan", "lecam", "nice", "maskedgan"}
    assert expected <= set(REGISTRY)
    listing = {d["name"]: d for d in describe_regularizers()}
    assert expected <= set(listing)
    assert listing["lecam"]["params"] == {"decay": 0.99} and listing["lecam"]["default_weight"] == 0.3
    assert listing["lecam"]["default_interval"] == 1 and listing["diggan"]["default_weight"] == 100.0
    for d in listing.values():
        assert d["description"] and isinstance(d["params"], dict)
        assert d["default_weight"] is not None and d["default_interval"] >= 1
    for name in expected - {"diggan"}:
        with pytest.raises(ValueError, match="no parameter"):
            build_regularizers([{"name": name, "weight": 1, "params": {"bogus": 1}}])
    for bad in ({"name": "nice", "weight": 1, "params": {"noisy_adv": 0.5}},
                {"name": "maskedgan", "weight": 1, "params": {"bands": 1}},
                {"name": "maskedgan", "weight": 1, "params": {"spatial_ratio": 2}}):
        with pytest.raises(ValueError, match=bad["name"]):
            build_regularizers([bad])
