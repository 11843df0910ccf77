"""Latents, SeFa edits, style mixing and the ONNX export over real HTTP, on a briefly trained cpu-tiny
checkpoint (tests/editing_world.py). No worker: none of these runs in the background.

What must hold (docs/editing.md):
- a latent saved from a seed renders that seed's sample bit for bit, its .npy is the generator's own w;
- style mixing a latent with itself reproduces the plain sample; taking every layer from the column source
  gives the column's sample;
- the image moves away from the unedited one strictly monotonically with |strength| along a SeFa direction;
- the ONNX export samples like the samples endpoint within one level (onnxruntime);
- delete credits storage; bad input is a 4xx whose message says what to send.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from service.core.db.models import Blob
from tests.e2e.harness import LiveServer, make_settings, store_keys
from tests.editing_world import RES, job_with_checkpoint, mse, pixels, sample, trained_checkpoint, zip_images


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("latents")
    ckpt = trained_checkpoint(root)
    with LiveServer(make_settings(root / "srv")) as srv:
        job = job_with_checkpoint(srv.client, srv.core, "default", ckpt)
        other = job_with_checkpoint(srv.client, srv.core, "default", ckpt)
        yield {"srv": srv, "c": srv.client, "job": job, "other": other, "ckpt": ckpt}


def _used(srv) -> int:
    with srv.core.db.read() as s:
        return int(s.scalar(select(func.coalesce(func.sum(Blob.size), 0)).where(Blob.tenant == "default")))


def _generator(ckpt: bytes):
    from gan_core.sampling import generator_from_payload
    from gan_core.training.checkpoint import load_checkpoint_bytes

    G, _ = generator_from_payload(load_checkpoint_bytes(ckpt), "cpu")
    return G


def test_a_latent_from_a_seed_renders_that_sample_and_deletes_cleanly(world):
    c, job, srv = world["c"], world["job"], world["srv"]
    before = _used(srv)
    r = c.post(f"/v1/jobs/{job}/latents", json={"seed": 5, "psi": 0.7, "name": "five"})
    assert r.status_code == 201, r.text
    lat = r.json()
    assert lat["kind"] == "w" and lat["shape"] == [1, 64] and lat["source"] == {"type": "seed", "seed": 5, "psi": 0.7}
    assert lat["name"] == "five" and lat["checkpoint"] == "ckpt-00000.032.pt"
    assert _used(srv) == before + lat["size"]  # charged to the tenant's storage

    img = c.get(f"/v1/jobs/{job}/latents/{lat['id']}/image.png")  # psi 1: the latent as saved
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    assert np.array_equal(pixels(img.content), sample(c, job, 5, 0.7))  # bit for bit

    npy = c.get(f"/v1/jobs/{job}/latents/{lat['id']}/w.npy")
    w = np.load(io.BytesIO(npy.content), allow_pickle=False)
    from gan_core.latents import w_from_seeds

    assert w.dtype == np.float32 and w.shape == (1, 64)
    assert np.array_equal(w, w_from_seeds(_generator(world["ckpt"]), [5], 0.7).numpy())
    assert lat["id"] in [x["id"] for x in c.get(f"/v1/jobs/{job}/latents").json()["data"]]
    assert c.get(f"/v1/jobs/{job}/latents/{lat['id']}").json()["npy_url"].endswith(f"/latents/{lat['id']}/w.npy")

    # Another job of the same tenant does not see it; a delete credits storage and removes the object.
    assert c.get(f"/v1/jobs/{world['other']}/latents/{lat['id']}").status_code == 404
    assert c.delete(f"/v1/jobs/{job}/latents/{lat['id']}").status_code == 204
    assert _used(srv) == before
    assert c.get(f"/v1/jobs/{job}/latents/{lat['id']}").status_code == 404
    assert not [k for k in store_keys(srv.store) if lat["id"] in k]


def test_sefa_directions_change_the_image_monotonically(world):
    c, job = world["c"], world["job"]
    d = c.get(f"/v1/jobs/{job}/directions", params={"k": 3}).json()
    assert d["num_ws"] == 10 and d["w_dim"] == 64 and d["layers"] == list(range(9))  # all but the last ToRGB
    vecs = np.array([x["vector"] for x in d["directions"]])
    assert vecs.shape == (3, 64) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    eig = [x["eigenvalue"] for x in d["directions"]]
    assert eig == sorted(eig, reverse=True)

    for direction in range(3):
        images = {s: pixels(c.post(f"/v1/jobs/{job}/edits/image", json={"source": 9, "direction": direction,
                                                                          "strength": s}).content)
                  for s in (0, 1, 2, 4, 8, -1, -2, -4, -8)}
        for side in (1, -1):
            dist = [mse(images[side * s], images[0]) for s in (1, 2, 4, 8)]
            assert all(a < b for a, b in zip(dist, dist[1:])), (direction, side, dist)
            assert dist[0] > 0
    assert np.array_equal(images[0], sample(c, job, 9, 1.0))  # strength 0 is the plain sample

    strip = c.post(f"/v1/jobs/{job}/edits/strip", json={"source": 9, "direction": 0, "strengths": [-3, 0, 3]})
    assert strip.status_code == 200 and strip.headers["x-strengths"] == "-3,0,3"
    assert Image.open(io.BytesIO(strip.content)).size == (3 * (RES + 2) + 2, RES + 4)

    # A direction applied to a saved latent is saved as a new (W+) latent that renders as the edit did.
    lat = c.post(f"/v1/jobs/{job}/latents", json={"seed": 9, "psi": 1.0}).json()
    edited = c.post(f"/v1/jobs/{job}/latents/{lat['id']}/edit", json={"direction": 1, "strength": 2.5, "name": "e"})
    assert edited.status_code == 201, edited.text
    e = edited.json()
    assert e["kind"] == "w+" and e["shape"] == [1, 10, 64] and e["source"]["latent_id"] == lat["id"]
    assert e["source"]["layers"] == list(range(9))
    want = pixels(c.post(f"/v1/jobs/{job}/edits/image", json={"source": lat["id"], "direction": 1,
                                                                "strength": 2.5}).content)
    assert np.array_equal(pixels(c.get(f"/v1/jobs/{job}/latents/{e['id']}/image.png").content), want)


def test_style_mixing_identical_sources_is_the_plain_sample(world):
    c, job = world["c"], world["job"]
    same = c.post(f"/v1/jobs/{job}/mixing", json={"row": 4, "col": 4, "styles": "0-6", "psi": 0.7})
    assert same.status_code == 200, same.text
    assert np.array_equal(pixels(same.content), sample(c, job, 4, 0.7))
    # Every layer from the column source: the column's sample; some layers: neither source.
    allcol = c.post(f"/v1/jobs/{job}/mixing", json={"row": 4, "col": 8, "styles": "0-9", "psi": 0.7})
    assert np.array_equal(pixels(allcol.content), sample(c, job, 8, 0.7))
    coarse = pixels(c.post(f"/v1/jobs/{job}/mixing", json={"row": 4, "col": 8, "styles": [0, 1, 2, 3]}).content)
    assert mse(coarse, sample(c, job, 4, 1.0)) > 0 and mse(coarse, sample(c, job, 8, 1.0)) > 0

    # The grid: black corner, sources along the edges, a saved latent usable as a source.
    lat = c.post(f"/v1/jobs/{job}/latents", json={"seed": 4, "psi": 1.0}).json()
    r = c.post(f"/v1/jobs/{job}/mixing/grid", json={"rows": [lat["id"], 2], "cols": [8, 1, 3], "styles": "0-3"})
    assert r.status_code == 200, r.text
    grid = pixels(r.content)
    assert grid.shape == (RES * 3, RES * 4, 3) and grid[:RES, :RES].max() == 0
    assert np.array_equal(grid[RES:2 * RES, :RES], sample(c, job, 4, 1.0))  # the latent's row source
    assert np.array_equal(grid[:RES, RES:2 * RES], sample(c, job, 8, 1.0))


def test_interpolation_between_a_latent_and_a_seed(world):
    c, job = world["c"], world["job"]
    lat = c.post(f"/v1/jobs/{job}/latents", json={"seed": 3, "psi": 0.7}).json()
    r = c.post(f"/v1/jobs/{job}/latents/interpolation", json={"a": lat["id"], "b": 11, "steps": 5, "psi": 1.0,
                                                                 "boomerang": False})
    assert r.status_code == 200 and r.headers["content-type"] == "image/gif"
    gif = Image.open(io.BytesIO(r.content))
    frames = []
    for i in range(gif.n_frames):
        gif.seek(i)
        frames.append(np.asarray(gif.convert("RGB"), dtype=np.int16))
    assert len(frames) == 5
    a, b = sample(c, job, 3, 0.7), sample(c, job, 11, 1.0)
    assert np.abs(frames[0] - a).mean() < 8 and np.abs(frames[-1] - b).mean() < 8  # up to the GIF palette
    assert np.abs(frames[0] - b).mean() > 2 * np.abs(frames[0] - a).mean()


def test_onnx_export_samples_like_the_service(world):
    ort = pytest.importorskip("onnxruntime", reason="the 'export' extra")
    c, job, srv = world["c"], world["job"], world["srv"]
    r = c.get(f"/v1/jobs/{job}/export", params={"format": "onnx"}, timeout=300)
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"].endswith('-generator.onnx"')
    seeds = [0, 1, 2, 3]
    z = np.stack([np.random.RandomState(s).randn(64) for s in seeds]).astype(np.float32)  # our seed -> z
    got = ort.InferenceSession(r.content, providers=["CPUExecutionProvider"]).run(
        None, {"z": z, "psi": np.array(0.7, np.float32)})[0]
    served = np.stack(zip_images(c.post(f"/v1/jobs/{job}/samples", json={"seeds": seeds, "psi": 0.7,
                                                                          "format": "zip"}).content))
    diff = np.abs(got.transpose(0, 2, 3, 1).astype(np.int16) - served)
    assert got.dtype == np.uint8 and diff.max() <= 1, diff.max()  # within 1/255
    # Made once per checkpoint and format, then served from the store (and charged).
    cached = [k for k in store_keys(srv.store) if k.endswith("-onnx")]
    assert len(cached) == 1
    assert c.get(f"/v1/jobs/{job}/export", params={"format": "onnx"}).content == r.content


@pytest.mark.parametrize("method,path,body,status,words", [
    ("POST", "latents", {"seed": 1, "psi": 9}, 422, "psi must be within"),
    ("POST", "latents", {"seed": -1}, 422, "seed"),
    ("POST", "latents", {"seed": 1, "checkpoint": "nope"}, 404, "has no checkpoint 'nope'"),
    ("GET", "latents/lat_00000000000000000000000000", None, 404, "no latent"),
    ("GET", "latents/whatever/w.npy", None, 404, "no latent"),
    ("GET", "latents?cursor=x", None, 422, "invalid cursor"),
    ("GET", "directions?k=0", None, 422, "k"),
    ("GET", "directions?layers=0-99", None, 422, "style layers must be in 0..9"),
    ("POST", "edits/image", {"source": 1, "direction": 64, "strength": 1}, 422, "num must be in 1..64"),
    ("POST", "edits/image", {"source": "abc", "direction": 0, "strength": 1}, 422, "latent id"),
    ("POST", "edits/image", {"source": True, "direction": 0, "strength": 1}, 422, "source"),
    ("POST", "edits/image", {"source": "lat_00000000000000000000000000", "direction": 0, "strength": 1}, 404,
     "no latent"),
    ("POST", "edits/strip", {"source": 1, "direction": 0, "strengths": []}, 422, "strengths"),
    ("POST", "edits/strip", {"source": 1, "direction": 0, "layers": "a-b"}, 422, "give layer indices"),
    ("POST", "mixing", {"row": 1, "col": 2, "styles": "0-10"}, 422, "style layers must be in 0..9"),
    ("POST", "mixing/grid", {"rows": list(range(9)), "cols": [1]}, 422, "rows"),
    ("POST", "latents/interpolation", {"a": 1, "b": 2, "steps": 65}, 422, "at most 64 frames"),
    ("GET", "export?format=pickle", None, 422, "format"),
])
def test_bad_input_is_a_4xx_with_a_message(world, method, path, body, status, words):
    r = world["c"].request(method, f"/v1/jobs/{world['job']}/{path}", json=body)
    assert r.status_code == status, (r.status_code, r.text)
    assert words in r.json()["detail"], r.json()["detail"]


def test_a_latent_of_another_shape_and_a_job_without_w_space_are_refused(world):
    c, srv = world["c"], world["srv"]
    # An sngan job: no W space, refused before any checkpoint is looked at.
    ds = c.get("/v1/datasets").json()["data"][0]["id"]
    sngan = c.post("/v1/jobs", json={"dataset_id": ds, "arch": "sngan", "kimg": 1}).json()["id"]
    c.post(f"/v1/jobs/{sngan}/cancel")
    r = c.post(f"/v1/jobs/{sngan}/mixing", json={"row": 1, "col": 2})
    assert r.status_code == 422 and "no W space" in r.json()["detail"]
    # A job without a checkpoint yet: 409 saying when there will be one.
    bare = c.post("/v1/jobs", json={"dataset_id": ds, "kimg": 1}).json()["id"]
    c.post(f"/v1/jobs/{bare}/cancel")
    r = c.post(f"/v1/jobs/{bare}/latents", json={"seed": 1})
    assert r.status_code == 409 and "without storing a checkpoint" in r.json()["detail"]
    # A stored latent whose shape does not fit the generator (written as a bad client of the store would).
    from service.core.ids import new_id
    from service.core.latents import LatentRecord, LatentRepo, npy_bytes

    bad = LatentRepo(srv.core.db).save(srv.store, LatentRecord(
        id=new_id("lat"), tenant="default", job_id=world["job"], kind="w", shape=[1, 32], checkpoint="x",
        checkpoint_sha256="0" * 64), npy_bytes(np.zeros((1, 32), np.float32)), None)
    r = c.get(f"/v1/jobs/{world['job']}/latents/{bad.id}/image.png")
    assert r.status_code == 422 and "w_dim=64" in r.json()["detail"]
