"""StyleGAN2 generator / residual discriminator: shapes, NVlabs names, gradients, determinism.

Networks are tiny (a handful of channels) so the whole file runs in seconds on 2 CPU cores.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gan_core.config import NetworkConfig, get_preset
from gan_core.networks import Discriminator, Generator, MinibatchStdLayer
from gan_core.networks.layers import conv2d_resample, downsample2d, setup_filter, upfirdn2d, upsample2d


def tiny_cfg(resolution: int = 32, **kw) -> NetworkConfig:
    """At most 16 channels; at least 4 at 1024 (channels = min(base // res, max))."""
    base = dict(
        resolution=resolution, z_dim=16, w_dim=16, mapping_layers=2, channel_base=4096, channel_max=16
    )
    base.update(kw)
    return NetworkConfig(**base)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("res", [32, 64, 128, 256, 512, 1024])
def test_shapes_every_resolution(res: int) -> None:
    # Fewer channels and samples at the big resolutions keep this fast (2 channels at 1024).
    cfg = tiny_cfg(res, channel_base=4096 if res <= 128 else 2048, channel_max=16 if res <= 128 else 8)
    n = 2 if res <= 256 else 1
    G, D = Generator(cfg).eval(), Discriminator(cfg)
    assert (G.z_dim, G.w_dim, G.img_resolution, G.img_channels) == (16, 16, res, 3)
    assert G.num_ws == 2 * int(math.log2(res)) - 2
    with torch.no_grad():
        ws = G.mapping(torch.randn(n, G.z_dim))
        assert ws.shape == (n, G.num_ws, G.w_dim)
        img = G.synthesis(ws, noise_mode="const")
        assert img.shape == (n, 3, res, res) and torch.isfinite(img).all()
        logits = D(img)
    assert logits.shape == (n, 1) and torch.isfinite(logits).all()


def test_g_call_and_train_mode_paths() -> None:
    G = Generator(tiny_cfg()).train()
    img = G(torch.randn(3, 16), truncation_psi=0.7, noise_mode="random", update_w_avg=True)
    assert img.shape == (3, 3, 32, 32)


def test_bad_configs_raise() -> None:
    with pytest.raises(ValueError, match="power of two"):
        Generator(tiny_cfg(48))
    with pytest.raises(ValueError, match="0 channels"):
        Discriminator(tiny_cfg(64, channel_base=32))
    G = Generator(tiny_cfg())
    with pytest.raises(ValueError, match="noise_mode"):
        G(torch.randn(1, 16), noise_mode="fixed")
    with pytest.raises(ValueError, match="z must have shape"):
        G(torch.randn(1, 17))


# --------------------------------------------------------------------------- NVlabs names


def test_nvlabs_names_res64() -> None:
    cfg = tiny_cfg(64)
    g_keys = set(Generator(cfg).state_dict())
    d_keys = set(Discriminator(cfg).state_dict())
    for k in [
        "mapping.fc0.weight",
        "mapping.fc0.bias",
        "mapping.fc1.weight",
        "mapping.w_avg",
        "synthesis.b4.const",
        "synthesis.b4.resample_filter",
        "synthesis.b4.conv1.affine.weight",
        "synthesis.b4.conv1.affine.bias",
        "synthesis.b4.conv1.weight",
        "synthesis.b4.conv1.bias",
        "synthesis.b4.conv1.noise_strength",
        "synthesis.b4.conv1.noise_const",
        "synthesis.b4.conv1.resample_filter",
        "synthesis.b4.torgb.weight",
        "synthesis.b64.conv0.weight",
        "synthesis.b64.conv0.affine.weight",
        "synthesis.b64.conv0.resample_filter",
        "synthesis.b64.conv1.weight",
        "synthesis.b64.torgb.weight",
        "synthesis.b64.torgb.affine.weight",
        "synthesis.b64.torgb.bias",
    ]:
        assert k in g_keys, k
    assert "synthesis.b4.conv0.weight" not in g_keys  # the 4x4 block starts from `const`
    for k in [
        "b64.fromrgb.weight",
        "b64.fromrgb.bias",
        "b64.skip.weight",
        "b64.conv0.weight",
        "b64.conv1.weight",
        "b64.conv1.bias",
        "b64.resample_filter",
        "b64.conv1.resample_filter",
        "b8.skip.weight",
        "b4.conv.weight",
        "b4.fc.weight",
        "b4.out.weight",
        "b4.out.bias",
    ]:
        assert k in d_keys, k
    # Resnet D: only the top block reads the image; skip convs have no bias.
    assert "b32.fromrgb.weight" not in d_keys
    assert "b64.skip.bias" not in d_keys
    assert not any(k.startswith("b4.fromrgb") for k in d_keys)
    assert Generator(cfg).state_dict()["synthesis.b64.conv0.resample_filter"].shape == (4, 4)


def test_channels_and_equalized_lr_storage() -> None:
    cfg = tiny_cfg(64, channel_base=512, channel_max=32, mapping_lr_mult=0.01)
    G, D = Generator(cfg), Discriminator(cfg)
    # min(channel_base // res, channel_max): 32 up to 16x16, then 16 at 32x32, 8 at 64x64
    assert G.synthesis.b4.const.shape == (32, 4, 4)
    assert G.synthesis.b64.conv0.weight.shape == (8, 16, 3, 3)
    assert D.b64.fromrgb.weight.shape == (8, 3, 1, 1)
    assert D.b64.conv1.weight.shape == (16, 8, 3, 3)
    # Mapping weights are stored as randn / lr_mult (so std ~100) and scaled back at run time.
    assert 50 < G.mapping.fc0.weight.std().item() < 200
    assert G.mapping.fc0.weight_gain == pytest.approx(0.01 / math.sqrt(cfg.z_dim))
    assert torch.all(G.synthesis.b8.conv1.affine.bias == 1)  # styles start at 1


def test_init_is_deterministic_from_global_rng() -> None:
    cfg = tiny_cfg()
    torch.manual_seed(123)
    a = Generator(cfg).state_dict()
    torch.manual_seed(123)
    b = Generator(cfg).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- mapping / truncation


def test_truncation_psi_zero_gives_w_avg() -> None:
    G = Generator(tiny_cfg())
    G.mapping.w_avg.copy_(torch.randn(G.w_dim))
    ws = G.mapping(torch.randn(5, G.z_dim), truncation_psi=0.0)
    assert torch.allclose(ws, G.mapping.w_avg.expand_as(ws))
    ws_half = G.mapping(torch.randn(5, G.z_dim), truncation_psi=0.5, truncation_cutoff=2)
    assert ws_half.shape == (5, G.num_ws, G.w_dim)


def test_w_avg_tracking() -> None:
    G = Generator(tiny_cfg())
    z = torch.randn(8, G.z_dim)
    before = G.mapping.w_avg.clone()
    G.mapping(z)  # default: no update
    assert torch.equal(G.mapping.w_avg, before)
    w = G.mapping(z, update_w_avg=True)[:, 0].mean(0)
    assert torch.allclose(G.mapping.w_avg, w + 0.995 * (before - w), atol=1e-6)


# --------------------------------------------------------------------------- noise


def test_noise_modes() -> None:
    G = Generator(tiny_cfg())
    with torch.no_grad():  # make noise matter: NVlabs initialises noise_strength to 0
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)
    ws = G.mapping(torch.randn(2, G.z_dim))
    assert torch.equal(G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const"))
    assert torch.equal(G.synthesis(ws, noise_mode="none"), G.synthesis(ws, noise_mode="none"))
    assert not torch.allclose(G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random"))


def test_fused_and_unfused_modconv_agree() -> None:
    G = Generator(tiny_cfg())
    with torch.no_grad():
        for p in G.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # non-trivial biases / noise strengths
    ws = G.mapping(torch.randn(3, G.z_dim))
    a = G.synthesis(ws, noise_mode="const", fused_modconv=True)
    b = G.synthesis(ws, noise_mode="const", fused_modconv=False)
    assert torch.allclose(a, b, atol=1e-4 * b.abs().max().item())


# --------------------------------------------------------------------------- discriminator


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_d_any_batch_size(n: int) -> None:
    D = Discriminator(tiny_cfg(mbstd_group_size=4))
    out = D(torch.randn(n, 3, 32, 32))
    assert out.shape == (n, 1) and torch.isfinite(out).all()


def test_mbstd_group_size_divides_batch() -> None:
    eff = MinibatchStdLayer.effective_group_size
    assert [eff(4, n) for n in (1, 2, 3, 4, 5, 6, 8, 12)] == [1, 2, 3, 4, 1, 3, 4, 4]
    assert eff(None, 6) == 6
    # Group layout (NVlabs): with N=4, G=2, samples {0, 2} and {1, 3} form the groups.
    x = torch.zeros(4, 2, 1, 1)
    x[0] = 1.0  # only group {0, 2} has any spread
    y = MinibatchStdLayer(2)(x)[:, -1, 0, 0]
    assert y[0] == y[2] and y[1] == y[3] and y[0] > y[1]


def test_double_backward_r1_on_d() -> None:
    D = Discriminator(tiny_cfg(conv_clamp=256.0))
    img = torch.randn(4, 3, 32, 32, requires_grad=True)
    (grad,) = torch.autograd.grad(D(img).sum(), img, create_graph=True)
    penalty = grad.square().sum(dim=[1, 2, 3]).mean()
    penalty.backward()
    for name, p in D.named_parameters():
        if name == "b4.out.bias":  # d(logit)/d(img) does not depend on the last bias at all
            assert p.grad is None
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        # Other biases only move lrelu kinks, so with piecewise-linear activations their
        # R1 gradient is 0; every weight must receive signal.
        if name.endswith("weight"):
            assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("fused", [True, False])
def test_double_backward_path_length_on_g(fused: bool) -> None:
    G = Generator(tiny_cfg())
    ws = G.mapping(torch.randn(2, G.z_dim))
    img = G.synthesis(ws, noise_mode="const", fused_modconv=fused)
    (grad,) = torch.autograd.grad((img * torch.randn_like(img)).sum(), ws, create_graph=True)
    grad.square().sum().backward()
    w = G.synthesis.b32.conv0.weight.grad
    assert w is not None and torch.isfinite(w).all() and w.abs().sum() > 0


# --------------------------------------------------------------------------- resampling ops


def test_fir_resampling_preserves_constants() -> None:
    f = setup_filter([1, 3, 3, 1])
    assert f.sum().item() == pytest.approx(1.0)
    x = torch.ones(1, 2, 8, 8)
    up, down = upsample2d(x, f), downsample2d(x, f)
    assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4)
    assert torch.allclose(up[..., 2:-2, 2:-2], torch.ones(()))  # away from the zero-padded border
    assert torch.allclose(down[..., 1:-1, 1:-1], torch.ones(()))


def test_conv2d_resample_fast_paths_match_reference() -> None:
    f = setup_filter([1, 3, 3, 1])
    x, w = torch.randn(2, 3, 8, 8), torch.randn(5, 3, 3, 3)
    # up=2 via transposed conv == zero-insert + filter (gain 4) + true convolution.
    fast = conv2d_resample(x, w, f, up=2, padding=1, flip_weight=False)
    ref = F.conv2d(upfirdn2d(x, f, up=2, padding=[3, 2, 3, 2], gain=4), w.flip([2, 3]))
    assert fast.shape == (2, 5, 16, 16) and torch.allclose(fast, ref, atol=1e-5)
    # down=2 via filter + strided conv == conv + filter + decimate.
    fast = conv2d_resample(x, w, f, down=2, padding=1)
    ref = upfirdn2d(F.conv2d(F.pad(x, [2, 2, 2, 2]), w), f, down=2)
    assert fast.shape == (2, 5, 4, 4) and torch.allclose(fast, ref, atol=1e-5)
    # Grouped up-conv (the fused modulated conv) == per-group convs.
    xg, wg = torch.randn(1, 6, 8, 8), torch.randn(10, 3, 3, 3)
    fast = conv2d_resample(xg, wg, f, up=2, padding=1, groups=2, flip_weight=False)
    per = [
        conv2d_resample(xg[:, 3 * i : 3 * i + 3], wg[5 * i : 5 * i + 5], f, up=2, padding=1, flip_weight=False)
        for i in range(2)
    ]
    assert torch.allclose(fast, torch.cat(per, dim=1), atol=1e-5)


def test_cpu_tiny_preset_builds() -> None:
    cfg = get_preset("cpu-tiny").network
    G, D = Generator(cfg), Discriminator(cfg)
    with torch.no_grad():
        assert D(G(torch.randn(2, cfg.z_dim))).shape == (2, 1)
