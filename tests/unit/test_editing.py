"""W utilities, style mixing and SeFa (gan_core.latents) on a real, briefly trained 32x32 StyleGAN2."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gan_core.cli import main as gan_core_main
from gan_core.latents import (
    LatentError,
    apply_direction,
    edit_strip,
    interpolation_frames_w,
    lerp_w,
    load_w,
    mix_ws,
    mixing_grid,
    parse_styles,
    render,
    save_w,
    sefa_directions,
    style_mix,
    to_ws,
    w_avg,
    w_from_seeds,
)
from gan_core.sampling import generate_images, load_generator
from gan_core.threads import one_thread
from tests.unit.test_projection import train_tiny

SEEDS = [0, 1, 2, 5]


@pytest.fixture(autouse=True)
def single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("edit"))


@pytest.fixture(scope="module")
def G(checkpoint):
    return load_generator(checkpoint)[0]


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a.float() - b.float()) / 255).square().mean())


# ------------------------------------------------------------------------------------- W


def test_latents_from_seeds_render_exactly_like_the_sampler(G) -> None:
    for psi in (1.0, 0.7):
        w = w_from_seeds(G, SEEDS, psi)
        assert w.shape == (len(SEEDS), G.w_dim)
        assert torch.equal(render(G, w), generate_images(G, SEEDS, psi=psi))
    # Truncation at render time is the same as truncating the latent first.
    assert torch.equal(render(G, w_from_seeds(G, SEEDS), psi=0.7), generate_images(G, SEEDS, psi=0.7))
    # psi = 0 pulls every seed to w_avg.
    zero = render(G, w_from_seeds(G, SEEDS), psi=0.0)
    assert all(torch.equal(zero[i], render(G, w_avg(G))[0]) for i in range(len(SEEDS)))


def test_interpolation_is_linear_in_w_with_exact_ends(G) -> None:
    a, b = w_from_seeds(G, [1, 2])
    path = lerp_w(a, b, 5)
    assert path.shape == (5, G.w_dim) and torch.equal(path[0], a) and torch.equal(path[-1], b)
    assert torch.allclose(path[2], (a + b) / 2, atol=1e-6)
    frames = interpolation_frames_w(G, a, b, steps=5)
    assert len(frames) == 5 and frames[0].size == (32, 32)
    assert np.array_equal(np.array(frames[0]), generate_images(G, [1], psi=1.0)[0].permute(1, 2, 0).numpy())
    with pytest.raises(LatentError, match="at least 2"):
        lerp_w(a, b, 1)


def test_w_npy_round_trip_and_shape_checks(G, tmp_path: Path) -> None:
    w = w_from_seeds(G, [3])
    assert np.load(save_w(tmp_path / "w.npy", w[0])).shape == (1, G.w_dim)  # a batch dimension is added
    assert torch.equal(load_w(tmp_path / "w.npy", G), w)
    np.savez(tmp_path / "nv.npz", w=to_ws(G, w).numpy())  # NVlabs projector.py's projected_w.npz
    assert torch.equal(render(G, load_w(tmp_path / "nv.npz", G)), render(G, w))
    np.save(tmp_path / "bad.npy", np.zeros((1, G.w_dim + 1), dtype=np.float32))
    with pytest.raises(LatentError, match="w_dim"):
        load_w(tmp_path / "bad.npy", G)


# -------------------------------------------------------------------------------- mixing


def test_mixing_identical_latents_reproduces_the_plain_sample_exactly(G) -> None:
    w = w_from_seeds(G, [5], psi=0.7)
    for styles in ("0-3", "4-7", list(range(G.num_ws))):
        assert torch.equal(style_mix(G, w, w, styles), generate_images(G, [5], psi=0.7))
    grid, cells = mixing_grid(G, [1, 2], [2, 5], col_styles="0-3", psi=0.7)
    for seed in (1, 2, 5):
        assert torch.equal(cells[(seed, seed)], generate_images(G, [seed], psi=0.7)[0])
    assert grid.size == (32 * 3, 32 * 3)
    arr = np.array(grid)
    assert arr[:32, :32].max() == 0  # NVlabs' black corner
    assert np.array_equal(arr[32:64, 64:96], cells[(1, 5)].permute(1, 2, 0).numpy())


def test_mixing_takes_exactly_the_chosen_layers_from_the_column_source(G) -> None:
    rows, cols = w_from_seeds(G, [1]), w_from_seeds(G, [9])
    ws = mix_ws(G, rows, cols, "0-2")
    assert torch.equal(ws[0, :3], to_ws(G, cols)[0, :3]) and torch.equal(ws[0, 3:], to_ws(G, rows)[0, 3:])
    assert torch.equal(style_mix(G, rows, cols, range(G.num_ws)), render(G, cols))  # every layer: the column image
    mixed = style_mix(G, rows, cols, "0-2")
    assert not torch.equal(mixed, render(G, rows)) and not torch.equal(mixed, render(G, cols))
    with pytest.raises(LatentError, match=f"0..{G.num_ws - 1}"):
        parse_styles(f"0-{G.num_ws}", G.num_ws)


# ---------------------------------------------------------------------------------- SeFa


def test_sefa_directions_are_orthonormal_eigenvectors_strongest_first(G) -> None:
    sefa = sefa_directions(G, num=5)
    assert sefa.directions.shape == (5, G.w_dim) and sefa.layers == list(range(G.num_ws - 1))
    gram = sefa.directions @ sefa.directions.T
    assert torch.allclose(gram, torch.eye(5), atol=1e-5)
    assert all(sefa.eigenvalues[i] >= sefa.eigenvalues[i + 1] for i in range(4))
    assert torch.equal(sefa_directions(G, num=5).directions, sefa.directions)  # signs fixed: reproducible
    coarse = sefa_directions(G, num=2, layers="0-1")
    assert coarse.layers == [0, 1] and not torch.allclose(coarse.directions[0].abs(), sefa.directions[0].abs())


def test_sefa_edit_changes_the_image_monotonically_with_strength(G) -> None:
    """The distance to the unedited image grows with |strength|, on both sides, for the top directions."""
    sefa = sefa_directions(G, num=3)
    strengths = [-8, -4, -2, -1, 0, 1, 2, 4, 8]
    for seed in (0, 1, 2):
        w = w_from_seeds(G, [seed])
        for k in range(3):
            _, images = edit_strip(G, w, sefa, index=k, strengths=strengths)
            assert torch.equal(images[4], generate_images(G, [seed], psi=1.0)[0])  # strength 0 = the sample
            d = [mse(img, images[4]) for img in images]
            left, right = d[:5][::-1], d[4:]  # from 0 outwards
            assert all(a < b for a, b in pairwise(left)), (seed, k, d)
            assert all(a < b for a, b in pairwise(right)), (seed, k, d)


def test_apply_direction_moves_only_the_chosen_layers(G) -> None:
    sefa = sefa_directions(G, num=1, layers="0-3")
    w = w_from_seeds(G, [4])
    ws = apply_direction(G, w, sefa.directions[0], 2.5, sefa.layers)
    base = to_ws(G, w)
    assert torch.allclose(ws[0, :4] - base[0, :4], 2.5 * sefa.directions[0].expand(4, -1), atol=1e-5)
    assert torch.equal(ws[0, 4:], base[0, 4:])
    with pytest.raises(LatentError, match="does not exist"):
        edit_strip(G, w, sefa, index=3)


# ------------------------------------------------------------------------------------ CLI


def test_cli_mix_and_edit(checkpoint: Path, G, tmp_path: Path, capsys) -> None:
    out = tmp_path / "mix.png"
    assert gan_core_main(["mix", "--ckpt", str(checkpoint), "--rows", "1,2,3", "--cols", "10,11", "--styles", "0-3",
                          "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.size == (32 * 3, 32 * 4)
    capsys.readouterr()

    strip = tmp_path / "strip.png"
    assert gan_core_main(["edit", "--ckpt", str(checkpoint), "--seed", "5", "--direction", "1",
                          "--strengths", "-3,-1,0,1,3", "--out", str(strip), "--save-latents", str(tmp_path / "e")]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["strengths"] == [-3, -1, 0, 1, 3] and info["direction"] == 1
    with Image.open(strip) as im:
        assert im.size == (5 * 34 + 2, 34 + 2)  # make_grid: one row, 2 px padding
    assert torch.equal(render(G, load_w(tmp_path / "e" / "edit_d1_+0.npy", G)), generate_images(G, [5], psi=1.0))

    np.save(tmp_path / "w.npy", w_from_seeds(G, [5]).numpy())
    assert gan_core_main(["edit", "--ckpt", str(checkpoint), "--latent", str(tmp_path / "w.npy"),
                          "--strengths=-2,2", "--layers", "0-1", "--out", str(tmp_path / "s2.png")]) == 0
    assert gan_core_main(["mix", "--ckpt", str(checkpoint), "--rows", "1", "--cols", "2", "--styles", "0-99",
                          "--out", str(out)]) == 2
