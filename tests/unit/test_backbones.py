"""SNGAN and BigGAN at 32x32: shapes, spectral norm under double backward, the projection D,
hinge loss by hand, config checks, real training runs (DigGAN, R1, NICE + MaskedGAN) with labels,
exact resume, sampling by class, and the synthetic 10-class set."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from gan_core.config import (
    NetworkConfig,
    RegularizerConfig,
    fit_to_dataset,
    get_preset,
    validate_config,
)
from gan_core.data import make_synthetic_dataset, prepare_dataset, write_synthetic_classes, zip_folder
from gan_core.networks import build_networks
from gan_core.networks.resnet32 import classes_from_z
from gan_core.regularizers import GP1, RegContext
from gan_core.sampling import generate_images, interpolation_frames, load_generator
from gan_core.training import Trainer
from gan_core.training.losses import d_hinge_loss, g_hinge_loss
from tests.recorder import Recorder


def tiny_net(arch: str, num_classes: int = 0, **kw) -> NetworkConfig:
    shape = {"resolution": 32, "z_dim": 16, "g_channels": 8, "d_channels": 8, **kw}
    return NetworkConfig(arch=arch, num_classes=num_classes, **shape)


def micro(preset: str, regs: list[RegularizerConfig], kimg: float = 0.032) -> object:
    """The preset at 8 channels and batch 4: 8 minibatches, two ticks, a snapshot each."""
    cfg = get_preset(preset)
    cfg.network.z_dim, cfg.network.g_channels, cfg.network.d_channels = 16, 8, 8
    cfg.batch_size, cfg.kimg, cfg.tick_kimg, cfg.snapshot_ticks, cfg.num_grid = 4, kimg, 0.016, 1, 4
    cfg.regularizers = regs
    return cfg


@pytest.fixture(scope="module")
def ten(tmp_path_factory):
    folder = write_synthetic_classes(tmp_path_factory.mktemp("ten") / "shapes", num_classes=10, per_class=2)
    return prepare_dataset(folder, resolution=32, class_folders=True)


# ------------------------------------------------------------------------------------ networks


@pytest.mark.parametrize("arch,k", [("sngan", 0), ("biggan", 10), ("biggan", 1)])
def test_shapes_and_uniform_interface(arch: str, k: int) -> None:
    torch.manual_seed(0)
    G, D = build_networks(tiny_net(arch, k))
    assert (G.z_dim, G.img_resolution, G.c_dim, G.num_classes, D.c_dim) == (16, 32, k, k, k)
    z = torch.randn(5, 16)
    c = torch.arange(5) % k if k else None
    img = G(z, c, truncation_psi=0.7, noise_mode="random", update_w_avg=True)
    assert img.shape == (5, 3, 32, 32) and img.abs().max() <= 1
    assert D(img, c).shape == (5, 1)
    with pytest.raises(ValueError, match="z must have shape"):
        G(torch.randn(2, 3))


def test_stylegan2_takes_and_ignores_c() -> None:
    torch.manual_seed(0)
    G, D = build_networks(NetworkConfig(resolution=32, z_dim=16, w_dim=16, mapping_layers=1, channel_base=256, channel_max=16))
    z = torch.randn(2, 16)
    assert G.c_dim == 0 and torch.equal(G(z, None, noise_mode="const"), G(z, noise_mode="const"))
    img = G(z, noise_mode="const")
    assert torch.equal(D(img, None), D(img))


def test_spectral_norm_bounds_every_d_layer() -> None:
    torch.manual_seed(0)
    _, D = build_networks(tiny_net("biggan", 10))
    D.eval()
    for name, mod in D.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            sigma = torch.linalg.matrix_norm(mod.weight.detach().flatten(1), 2).item()
            assert sigma == pytest.approx(1.0, abs=0.05), name


def _r1(D: nn.Module, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(D(x, c).sum(), x, create_graph=True)
    return g.square().sum()


@pytest.mark.parametrize("arch", ["sngan", "biggan"])
def test_double_backward_through_spectral_norm_matches_finite_differences(arch: str) -> None:
    """d(R1 penalty)/d(weight) via create_graph equals a central difference (eval: u/v fixed)."""
    torch.manual_seed(1)
    D = build_networks(tiny_net(arch, 3 if arch == "biggan" else 0, d_channels=4))[1].double().eval()
    x, c = torch.randn(2, 3, 32, 32, dtype=torch.float64), (torch.tensor([0, 2]) if arch == "biggan" else None)
    w = D.block2.conv1.parametrizations.weight.original
    (auto,) = torch.autograd.grad(_r1(D, x, c), w)
    eps = 1e-6
    def shifted(idx: tuple[int, ...], delta: float) -> float:
        with torch.no_grad():
            w[idx] += delta
        value = _r1(D, x, c).item()
        with torch.no_grad():
            w[idx] -= delta
        return value

    for idx in [(0, 0, 1, 1), (3, 2, 0, 2), (1, 3, 2, 0)]:
        plus, minus = shifted(idx, eps), shifted(idx, -eps)
        assert auto[idx].item() == pytest.approx((plus - minus) / (2 * eps), rel=1e-4, abs=1e-8), idx
    # Training mode (power iteration every forward): the second-order graph still reaches every weight.
    D.train()
    _r1(D, x, c).backward()
    weights = [p for n, p in D.named_parameters() if n.endswith("weight.original")]  # biases do not enter R1
    assert weights and all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in weights)


def test_projection_discriminator_uses_labels() -> None:
    torch.manual_seed(0)
    D = build_networks(tiny_net("biggan", 4))[1].eval()  # eval: no power iteration between the calls
    x = torch.randn(3, 3, 32, 32)
    a, b = D(x, torch.tensor([0, 1, 2])), D(x, torch.tensor([3, 1, 0]))
    assert a[1] == b[1] and not torch.isclose(a[0], b[0]) and not torch.isclose(a[2], b[2])
    onehot = torch.nn.functional.one_hot(torch.tensor([0, 1, 2]), 4).float()
    assert torch.allclose(D(x, onehot), a)
    # logit = linear(h) + <embed(y), h>, written out
    h = D.features(x)
    manual = D.linear(h) + (D.embed.weight.t()[[0, 1, 2]] * h).sum(1, keepdim=True)
    assert torch.allclose(manual, a, atol=1e-5)
    with pytest.raises(ValueError, match="class-conditional"):
        D(x)
    with pytest.raises(ValueError, match="out of range"):
        D(x, torch.tensor([0, 1, 4]))
    sn_d = build_networks(tiny_net("sngan"))[1].eval()
    assert torch.equal(sn_d(x, torch.tensor([0, 1, 2])), sn_d(x))  # unconditional: c ignored


@pytest.mark.parametrize("shared_dim", [128, 0])
def test_biggan_generator_is_class_conditional(shared_dim: int) -> None:
    torch.manual_seed(0)
    G = build_networks(tiny_net("biggan", 5, shared_dim=shared_dim))[0].eval()
    z = torch.randn(4, 16)
    assert not torch.allclose(G(z, torch.zeros(4, dtype=torch.long)), G(z, torch.full((4,), 3)))
    assert torch.equal(G(z), G(z, classes_from_z(z, 5)))  # c=None: the class comes from the latent
    same = G(torch.randn(4, 16), torch.full((4,), 2), truncation_psi=0.0)
    assert torch.allclose(same, same[:1].expand_as(same))  # psi 0: z scaled to 0


def test_classes_from_z_cover_all_classes_uniformly() -> None:
    counts = torch.bincount(classes_from_z(torch.randn(20000, 4, generator=torch.Generator().manual_seed(0)), 10), minlength=10)
    assert counts.min() > 1800 and counts.max() < 2200


def test_hinge_loss_by_hand() -> None:
    real, fake = torch.tensor([[2.0], [0.5], [-1.0]]), torch.tensor([[-2.0], [0.3]])
    # D: mean(relu(1 - r)) + mean(relu(1 + f)) = (0 + 0.5 + 2) / 3 + (0 + 1.3) / 2
    assert d_hinge_loss(real, fake).item() == pytest.approx(2.5 / 3 + 0.65)
    assert g_hinge_loss(fake).item() == pytest.approx(0.85)  # -mean(f)


def test_regcontext_passes_real_and_fake_labels() -> None:
    class LabelD(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))
            self.seen: list[list[int]] = []

        def forward(self, x, c):
            self.seen.append(c.tolist())
            return (x.flatten(1).sum(1) * self.w[c]).unsqueeze(1)

    D = LabelD()
    real, fake = torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)
    ctx = RegContext(D, real, fake, create_graph=True, real_c=torch.tensor([0, 1]), fake_c=torch.tensor([2, 2]))
    ctx.real(), ctx.fake(), ctx.d_real(real[:1])
    assert D.seen == [[0, 1], [2, 2], [0]]
    GP1(10.0).penalty(ctx)  # interpolates are scored with the real labels
    assert D.seen[-1] == [0, 1]


# -------------------------------------------------------------------------------------- config


def test_validate_config_rejects_what_cannot_work() -> None:
    def bad(preset: str, match: str, **changes) -> None:
        cfg = get_preset(preset)
        for key, value in changes.items():
            obj, _, attr = key.rpartition("__")
            setattr(getattr(cfg, obj) if obj else cfg, attr, value)
        with pytest.raises(ValueError, match=match):
            validate_config(cfg)

    bad("sngan-32", "resolution=32", network__resolution=64)
    bad("sngan-32", "unconditional", network__num_classes=10)
    bad("cpu-tiny", "unconditional", network__num_classes=3)
    bad("biggan-32", "gp1", regularizers=[RegularizerConfig("gp1", 10.0, 4)])
    bad("sngan-32", "path-length", pl_weight=2.0)
    bad("cpu-tiny", "d_steps=1", pl_weight=2.0, d_steps=2)
    bad("sngan-32", "loss must be", loss="wasserstein")
    bad("sngan-32", "d_steps", d_steps=0)
    bad("sngan-32", "network.arch", network__arch="dcgan")
    cfg = get_preset("sngan-32")
    cfg.regularizers = [RegularizerConfig(n, 1.0, 1) for n in ("gp1", "nice", "maskedgan", "r1")]
    validate_config(cfg)  # every regularizer works on the unconditional SN D


def test_fit_to_dataset() -> None:
    cfg = get_preset("biggan-32")
    assert fit_to_dataset(cfg, 10).network.num_classes == 10 and cfg.network.num_classes == 0  # a copy
    assert fit_to_dataset(cfg, 0).network.num_classes == 1  # unlabelled: unconditional BigGAN
    cfg.network.num_classes = 5
    with pytest.raises(ValueError, match="has 10 classes"):
        fit_to_dataset(cfg, 10)
    with pytest.raises(ValueError, match="no class labels"):
        fit_to_dataset(cfg, 0)
    cfg.network.num_classes = 1
    assert fit_to_dataset(cfg, 10) is cfg  # one class: labels ignored
    sngan = get_preset("sngan-32")
    assert fit_to_dataset(sngan, 10) is sngan


# ------------------------------------------------------------------------------------ training


@pytest.mark.parametrize("preset,regs", [
    ("sngan-32", ["diggan"]),
    ("biggan-32", ["r1", "diggan"]),
    ("biggan-32", ["nice", "maskedgan", "dragan"]),
])
def test_short_training_run(preset: str, regs: list[str], ten, tmp_path: Path) -> None:
    params = {"nice": {"adjust_kimg": 0.001}}  # sigma > 0 after the first step: the noisy passes run
    cfg = micro(preset, [RegularizerConfig(n, 10.0, 2, params.get(n, {})) for n in regs])
    trainer = Trainer(cfg, ten, tmp_path, callbacks=(rec := Recorder()))
    calls = {"G": 0, "D": 0}
    for step in ("_generator_step", "_discriminator_step"):
        orig = getattr(trainer, step)

        def counted(*a, _orig=orig, _k=step[1]):
            calls[_k.upper()] += 1
            return _orig(*a)

        setattr(trainer, step, counted)
    result = trainer.run()
    assert result.kimg == pytest.approx(0.032) and len(rec.ticks) == 2
    assert calls == {"D": 8, "G": -(-8 // cfg.d_steps)}  # kimg counts D's real images; G on every d_steps-th
    for t in rec.ticks:
        assert all(t[k] is not None and t[k] == t[k] for k in ("loss_G", "loss_D", "dig"))
    seen = {k for t in rec.ticks for k, v in t.items() if v is not None}
    stat_of = {"r1": "r1", "diggan": "dig_smoothed", "nice": "nice_consistency", "maskedgan": "maskedgan_spatial",
               "dragan": "dragan"}
    assert all(stat_of[n] in seen for n in regs), seen
    if "nice" in regs:
        assert max(t["nice_sigma"] for t in rec.ticks) > 0
    G, cfg_saved = load_generator(tmp_path / "checkpoints" / "latest.pt")
    assert cfg_saved.network.arch == preset.split("-")[0] and G.c_dim == (10 if preset == "biggan-32" else 0)


def test_real_labels_follow_the_sampler(ten, tmp_path: Path) -> None:
    trainer = Trainer(micro("biggan-32", []), ten, tmp_path)
    assert trainer.cfg.network.num_classes == 10 and trainer.labels.tolist() == ten.labels
    replay = copy.deepcopy(trainer.sampler)
    for _ in range(3):
        _, c = trainer.next_real_batch_and_labels()
        idx, _ = next(replay)
        assert c.tolist() == [ten.labels[i] for i in idx.tolist()]


def test_biggan_resume_is_exact(ten, tmp_path: Path) -> None:
    regs = [RegularizerConfig("diggan", 100.0, 2, {"alpha": 0.5}), RegularizerConfig("lecam", 0.3, 1, {"decay": 0.9})]
    straight = Trainer(micro("biggan-32", regs), ten, tmp_path / "a")
    straight.run()
    first = Trainer(micro("biggan-32", regs), ten, tmp_path / "b", callbacks=Recorder(stop_after_ticks=1)).run()
    assert first.stopped
    resumed = Trainer(micro("biggan-32", regs), ten, tmp_path / "c", resume_from=first.last_checkpoint)
    resumed.run()
    for name in ("G", "D", "G_ema"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        assert a.keys() == b.keys() and any("_u" in k for k in a)  # spectral-norm vectors are state too
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name}.{k}"


# ------------------------------------------------------------------------------------ sampling


def test_sampling_by_class(ten, tmp_path: Path) -> None:
    Trainer(micro("biggan-32", [], kimg=0.016), ten, tmp_path).run()
    G, _ = load_generator(tmp_path / "checkpoints" / "latest.pt")
    three = generate_images(G, [0, 1, 2], psi=1.0, class_index=3)
    assert three.shape == (3, 3, 32, 32) and three.dtype == torch.uint8
    per_seed = generate_images(G, [0, 1, 2], psi=1.0, class_index=[3, 3, 3])
    assert torch.equal(three, per_seed)
    assert not torch.equal(three, generate_images(G, [0, 1, 2], psi=1.0, class_index=7))
    own = [int(k) for k in classes_from_z(torch.stack([torch.from_numpy(__import__("numpy").random.RandomState(s)
                                                                          .randn(16)).float() for s in range(3)]), 10)]
    assert torch.equal(generate_images(G, [0, 1, 2], psi=1.0), generate_images(G, [0, 1, 2], psi=1.0, class_index=own))
    with pytest.raises(ValueError, match="out of range"):
        generate_images(G, [0], class_index=10)
    with pytest.raises(ValueError, match="one per seed"):
        generate_images(G, [0, 1], class_index=[1])
    assert len(interpolation_frames(G, 0, 1, steps=3, class_index=2)) == 3
    sngan = build_networks(tiny_net("sngan"))[0].eval()
    with pytest.raises(ValueError, match="unconditional"):
        generate_images(sngan, [0], class_index=0)
    assert len(interpolation_frames(sngan, 0, 1, steps=2)) == 2


# -------------------------------------------------------------------------------------- data


def test_synthetic_ten_classes_are_distinct_and_zip_keeps_labels(tmp_path: Path) -> None:
    a = write_synthetic_classes(tmp_path / "a", num_classes=10, per_class=3)
    b = make_synthetic_dataset(tmp_path / "b", n=30, resolution=32, num_classes=10)
    files = sorted(p.relative_to(a).as_posix() for p in a.rglob("*.png"))
    assert len(files) == 30 and all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    ds = prepare_dataset(zip_folder(a, tmp_path / "ten.zip"), class_folders=True)
    assert ds.num_classes == 10 and ds.class_names == [f"class{k}" for k in range(10)] and not ds.warnings
    assert ds.labels == [k for k in range(10) for _ in range(3)]
    # Each class's brightest colour: ten different dominant colours.
    colours = []
    for k in range(10):
        imgs = ds.images[[i for i, lab in enumerate(ds.labels) if lab == k]].float()
        bright = imgs.flatten(2).permute(0, 2, 1).reshape(-1, 3)
        bright = bright[bright.sum(1) >= bright.sum(1).quantile(0.8)]
        colours.append(bright.mean(0))
    dist = torch.cdist(torch.stack(colours), torch.stack(colours)) + torch.eye(10) * 1e3
    assert dist.min() > 40
    wide = make_synthetic_dataset(tmp_path / "c", n=12, resolution=32, num_classes=12)
    assert prepare_dataset(wide, class_folders=True).labels == list(range(12))  # zero-padded class folders


def test_ten_class_training_set_path_through_a_zip(tmp_path: Path) -> None:
    """The same labels come back from folders and from a zip with one folder per class."""
    folder = write_synthetic_classes(tmp_path / "s", num_classes=10, per_class=1)
    via_zip = prepare_dataset(zip_folder(folder, tmp_path / "s.zip"), class_folders=True)
    direct = prepare_dataset(folder, class_folders=True)
    assert via_zip.labels == direct.labels and torch.equal(via_zip.images, direct.images)
