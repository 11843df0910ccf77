"""POST /v1/jobs/{id}/samples/interpolation over real HTTP, on a real (randomly initialised) cpu-tiny
generator stored as a job's checkpoint exactly as the worker stores one. No worker needed."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from gan_core.config import config_to_dict, get_preset
from gan_core.networks import Generator
from gan_core.training.checkpoint import checkpoint_bytes
from tests.dbstate import add_checkpoint, set_job
from tests.e2e.harness import LiveServer, images_zip, make_settings, upload_zip

NAME = "ckpt-00000.032.pt"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("interp")
    with LiveServer(make_settings(root)) as srv:
        c = srv.client
        ds = upload_zip(c, images_zip(8)).json()["id"]
        job = c.post("/v1/jobs", json={"dataset_id": ds, "kimg": 1}).json()["id"]
        bare = c.post("/v1/jobs", json={"dataset_id": ds, "kimg": 1}).json()["id"]  # never gets a checkpoint
        for j in (job, bare):
            assert c.post(f"/v1/jobs/{j}/cancel").json()["status"] == "canceled"  # queued -> canceled, no worker
        cfg = get_preset("cpu-tiny")
        torch.manual_seed(0)
        G = Generator(cfg.network)
        data = checkpoint_bytes({"config": config_to_dict(cfg), "G_ema": G.state_dict()})
        add_checkpoint(srv.core, "default", job, NAME, data)
        yield {"c": c, "srv": srv, "ds": ds, "job": job, "bare": bare, "res": cfg.network.resolution}


def frames_of(data: bytes) -> list[np.ndarray]:
    gif = Image.open(io.BytesIO(data))
    out = []
    for i in range(gif.n_frames):
        gif.seek(i)
        out.append(np.asarray(gif.convert("RGB"), dtype=np.float32))
    return out


def test_gif_walks_from_seed_a_to_seed_b(world):
    c, job, res = world["c"], world["job"], world["res"]
    r = c.post(f"/v1/jobs/{job}/samples/interpolation", json={"seed_a": 3, "seed_b": 11, "steps": 5, "psi": 0.7,
                                                             "boomerang": False, "duration_ms": 50})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/gif" and r.headers["x-checkpoint"] == NAME
    frames = frames_of(r.content)
    assert len(frames) == 5 and frames[0].shape == (res, res, 3)
    assert Image.open(io.BytesIO(r.content)).info.get("duration") == 50

    # The ends are the seeds' own samples (as /samples makes them), up to the GIF palette.
    grid = c.post(f"/v1/jobs/{job}/samples", json={"seeds": [3, 11], "psi": 0.7, "format": "zip"})
    import zipfile

    with zipfile.ZipFile(io.BytesIO(grid.content)) as zf:
        a, b = (np.asarray(Image.open(io.BytesIO(zf.read(n))).convert("RGB"), dtype=np.float32) for n in sorted(zf.namelist()))
    diff = lambda x, y: float(np.abs(x - y).mean())  # noqa: E731
    assert diff(frames[0], a) < 8 and diff(frames[-1], b) < 8, (diff(frames[0], a), diff(frames[-1], b))
    assert diff(frames[0], b) > 2 * diff(frames[0], a)  # and they really differ from the other end

    # Boomerang (default) plays back without repeating the ends: 2 * steps - 2 frames.
    r = c.post(f"/v1/jobs/{job}/samples/interpolation", json={"seed_a": 3, "seed_b": 11, "steps": 5})
    assert r.status_code == 200 and len(frames_of(r.content)) == 8


@pytest.mark.parametrize("body,status,words", [
    ({"seed_a": 0, "seed_b": 1, "steps": 1}, 422, "steps"),
    ({"seed_a": 0, "seed_b": 1, "steps": 65}, 422, "at most 64 frames"),
    ({"seed_a": 0, "seed_b": 1, "psi": 9}, 422, "psi must be within"),
    ({"seed_a": -1, "seed_b": 1}, 422, "seed_a"),
    ({"seed_a": 0}, 422, "seed_b"),
    ({"seed_a": 0, "seed_b": 1, "duration_ms": 5}, 422, "duration_ms"),
    ({"seed_a": 0, "seed_b": 1, "frames": 8}, 422, "frames"),  # unknown field: said, not ignored
    ({"seed_a": 0, "seed_b": 1, "checkpoint": "ckpt-nope.pt"}, 404, "no checkpoint"),
    ({"seed_a": 0, "seed_b": 1, "class_index": 2}, 422, "takes no class_index"),  # an unconditional StyleGAN2
], ids=["steps-1", "steps-65", "psi", "seed-negative", "no-seed-b", "duration", "unknown-field", "unknown-ckpt",
        "class-unconditional"])
def test_bad_requests_say_what_to_fix(world, body, status, words):
    r = world["c"].post(f"/v1/jobs/{world['job']}/samples/interpolation", json=body)
    assert r.status_code == status and words in r.json()["detail"], r.text


def test_class_conditional_walk_keeps_one_class(world, tmp_path):
    """A biggan-32 job (3 classes): the walk takes class_index, checked against the job's classes."""
    from gan_core.networks import build_generator

    c, srv = world["c"], world["srv"]
    job = c.post("/v1/jobs", json={"dataset_id": world["ds"], "kimg": 1}).json()["id"]
    assert c.post(f"/v1/jobs/{job}/cancel").json()["status"] == "canceled"
    cfg = get_preset("biggan-32")
    cfg.network.num_classes = 3
    torch.manual_seed(0)
    data = checkpoint_bytes({"config": config_to_dict(cfg), "G_ema": build_generator(cfg.network).state_dict()})
    add_checkpoint(srv.core, "default", job, NAME, data)
    set_job(srv.core, job, config=config_to_dict(cfg))

    url = f"/v1/jobs/{job}/samples/interpolation"
    walks = {k: c.post(url, json={"seed_a": 1, "seed_b": 2, "steps": 3, "boomerang": False, "class_index": k})
             for k in (0, 2)}
    for r in walks.values():
        assert r.status_code == 200 and r.headers["content-type"] == "image/gif", r.text
        assert [f.shape for f in frames_of(r.content)] == [(32, 32, 3)] * 3
    assert walks[0].content != walks[2].content  # the class changes the pictures
    assert c.post(url, json={"seed_a": 1, "seed_b": 2, "steps": 3}).status_code == 200  # seed_a's own class
    r = c.post(url, json={"seed_a": 1, "seed_b": 2, "class_index": 3})
    assert r.status_code == 422 and "class_index must be in [0, 2]" in r.json()["detail"]


def test_no_checkpoint_or_no_job(world):
    c = world["c"]
    r = c.post(f"/v1/jobs/{world['bare']}/samples/interpolation", json={"seed_a": 0, "seed_b": 1})
    assert r.status_code == 409 and "without storing a checkpoint" in r.json()["detail"]
    r = c.post("/v1/jobs/job_00000000000000000000000000/samples/interpolation", json={"seed_a": 0, "seed_b": 1})
    assert r.status_code == 404
