"""Projections over real HTTP with a real Celery worker on the light queue, on a briefly trained cpu-tiny
checkpoint (tests/editing_world.py):

- projecting one of the generator's own samples recovers an image closer to it than another seed's sample,
  with progress (steps, ETA) reported while it runs, and the result saved as a latent that renders the
  reconstruction bit for bit;
- cancel stops a running projection; delete removes its files and credits storage;
- a worker killed mid-projection leaves it `running` only until the sweep sees its stale heartbeat: it is
  re-queued, and a new worker finishes it as attempt 2; a worker shut down (SIGTERM) hands it back itself,
  and the next attempt skips the images already done;
- the tenant's unfinished projections are capped (429), and bad uploads are 4xx with messages.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from service.core.db.models import Blob
from service.core.queue import enqueue_projection, enqueue_train
from service.core.sweep import sweep
from tests.e2e.harness import LiveServer, Worker, make_settings, store_keys, wait_for
from tests.editing_world import RES, job_with_checkpoint, mse, pixels, sample, trained_checkpoint

pytestmark = pytest.mark.slow

STEPS = 60  # pixel distance: ~0.1 s a step on one CPU thread


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("proj")
    ckpt = trained_checkpoint(root)
    settings = make_settings(root / "srv", worker_heartbeat_s=0.5, stale_after_s=3)
    worker = Worker(settings, root / "worker.log", queues="light", name="light").start()
    state = {"worker": worker, "settings": settings, "root": root}
    try:
        with LiveServer(settings) as srv:
            worker.wait_ready()
            job = job_with_checkpoint(srv.client, srv.core, "default", ckpt)
            state.update(srv=srv, c=srv.client, job=job)
            yield state
    finally:
        state["worker"].stop()  # tests replace it with a fresh worker: stop the one running now
        worker.stop()


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _start(c, job, images: list[tuple[str, bytes]], **fields) -> dict:
    r = c.post(f"/v1/jobs/{job}/projections", files=[("file", (n, d, "image/png")) for n, d in images],
               data={k: str(v) for k, v in fields.items()})
    assert r.status_code == 202, r.text
    return r.json()


def _wait(world, pid: str, until, timeout: float = 120) -> dict:
    c, job = world["c"], world["job"]
    try:
        return wait_for(lambda: (lambda p: p if until(p) else None)(c.get(f"/v1/jobs/{job}/projections/{pid}").json()),
                        timeout, pid, interval=0.1)
    except TimeoutError as e:
        raise TimeoutError(f"{e}\n{world['worker'].tail()}") from None


def _used(srv) -> int:
    with srv.core.db.read() as s:
        return int(s.scalar(select(func.coalesce(func.sum(Blob.size), 0)).where(Blob.tenant == "default")))


def test_projecting_an_own_sample_recovers_it(world):
    c, job = world["c"], world["job"]
    target = sample(c, job, 11, 1.0)
    p = _start(c, job, [("own-sample.png", _png(target))], steps=STEPS, distance="pixel")
    assert p["status"] == "queued" and p["progress"] == {"steps_done": 0, "total_steps": STEPS, "fraction": 0.0,
                                                         "eta_seconds": None, "distance": None}
    assert p["config"] == {"steps": STEPS, "w_plus": False, "distance": "pixel", "seed": 303}
    assert p["images"][0]["width"] == RES and p["images"][0]["status"] == "pending"

    seen = []

    def done():
        q = c.get(f"/v1/jobs/{job}/projections/{p['id']}").json()
        seen.append((q["progress"]["fraction"], q["progress"]["eta_seconds"]))
        return q if q["status"] in ("succeeded", "failed", "canceled") else None

    q = wait_for(done, 120, "projection", interval=0.1)
    assert q["status"] == "succeeded", (q, world["worker"].tail())
    assert any(0 < f < 1 and eta is not None and eta > 0 for f, eta in seen), seen  # progress while it ran
    assert q["progress"]["fraction"] == 1 and q["attempt"] == 1
    im = q["images"][0]
    assert im["status"] == "done" and im["steps"] == STEPS and im["distance"] < im["initial_distance"]

    recon = pixels(c.get(f"/v1/jobs/{job}/projections/{p['id']}/reconstruction.png").content)
    stored_target = pixels(c.get(f"/v1/jobs/{job}/projections/{p['id']}/target.png").content)
    assert np.array_equal(stored_target, target)  # already 64x64: the crop and resize changed nothing
    projected = mse(recon, target)
    other_seeds = [mse(sample(c, job, s, 1.0), target) for s in (12, 13, 14, 15)]
    print(f"\npixel MSE to the target: projected {projected:.5f}; other seeds' samples "
          f"{', '.join(f'{x:.5f}' for x in other_seeds)}")
    assert projected < min(other_seeds)
    assert im["pixel_mse"] == pytest.approx(projected, rel=1e-6)

    # The saved latent renders the reconstruction exactly, and is a latent like any other.
    lat = c.get(f"/v1/jobs/{job}/latents/{im['latent_id']}").json()
    assert lat["kind"] == "w" and lat["source"]["type"] == "projection" and lat["source"]["projection_id"] == p["id"]
    assert np.array_equal(pixels(c.get(f"/v1/jobs/{job}/latents/{lat['id']}/image.png").content), recon)
    gif = Image.open(io.BytesIO(c.get(f"/v1/jobs/{job}/projections/{p['id']}/progress.gif").content))
    assert gif.n_frames >= 2 and gif.size == (2 * RES, RES)

    # The event stream of a finished projection: its state, then the end.
    with c.stream("GET", f"/v1/jobs/{job}/projections/{p['id']}/events") as r:
        body = r.read().decode()
    assert "event: state" in body and 'event: end\ndata: {"status":"succeeded"}' in body
    assert p["id"] in [x["id"] for x in c.get(f"/v1/jobs/{job}/projections").json()["data"]]


def test_cancel_and_delete(world):
    c, job, srv = world["c"], world["job"], world["srv"]
    before = _used(srv)
    p = _start(c, job, [("a.png", _png(sample(c, job, 1, 1.0)))], steps=5000, distance="pixel")
    assert _used(srv) > before  # the stored target is charged
    assert c.delete(f"/v1/jobs/{job}/projections/{p['id']}").status_code == 409  # unfinished
    _wait(world, p["id"], lambda q: q["status"] == "running" and q["progress"]["steps_done"] > 0)
    r = c.post(f"/v1/jobs/{job}/projections/{p['id']}/cancel")
    assert r.status_code == 200 and r.json()["cancel_requested_at"]
    q = _wait(world, p["id"], lambda q: q["status"] in ("succeeded", "failed", "canceled"), timeout=30)
    assert q["status"] == "canceled" and q["images"][0]["status"] == "pending" and q["progress"]["steps_done"] < 5000
    assert c.post(f"/v1/jobs/{job}/projections/{p['id']}/cancel").status_code == 200  # again: a no-op
    assert c.delete(f"/v1/jobs/{job}/projections/{p['id']}").status_code == 204
    assert c.get(f"/v1/jobs/{job}/projections/{p['id']}").status_code == 404
    assert _used(srv) == before and not [k for k in store_keys(srv.store) if p["id"] in k]


def test_a_killed_worker_is_swept_and_the_projection_finishes_as_attempt_2(world):
    c, job, srv, settings = world["c"], world["job"], world["srv"], world["settings"]
    p = _start(c, job, [("k.png", _png(sample(c, job, 2, 1.0)))], steps=400, distance="pixel")
    _wait(world, p["id"], lambda q: q["status"] == "running" and q["progress"]["steps_done"] > 0)
    world["worker"].kill()  # SIGKILL: no final write, the message stays unacknowledged
    time.sleep(settings.stale_after_s + 1)
    assert c.get(f"/v1/jobs/{job}/projections/{p['id']}").json()["status"] == "running"  # nobody said otherwise
    celery = srv.app.state.celery
    actions = sweep(srv.core.db, settings, lambda t, j, g: enqueue_train(celery, t, j, g),
                    enqueue_projection=lambda t, pid: enqueue_projection(celery, t, pid))
    assert (p["id"], "projection re-queued (attempt 1)") in actions
    fresh = Worker(settings, world["root"] / "worker2.log", queues="light", name="light2").start()
    world["worker"] = fresh
    fresh.wait_ready()
    q = _wait(world, p["id"], lambda q: q["status"] in ("succeeded", "failed", "canceled"))
    assert q["status"] == "succeeded" and q["attempt"] == 2, q
    assert q["images"][0]["latent_id"] and q["images"][0]["steps"] == 400


def test_a_worker_shutting_down_hands_it_back_and_the_next_attempt_skips_finished_images(world):
    c, job, settings = world["c"], world["job"], world["settings"]
    # Four images: once the first is done, three are left (300 steps), far more than the time SIGTERM takes to
    # arrive; with two, a fast machine finished the second before the worker saw the signal (CI, 2026-12-05).
    images = [(f"{s}.png", _png(sample(c, job, s, 1.0))) for s in (30, 31, 32, 33)]
    p = _start(c, job, images, steps=100, distance="pixel")
    first = _wait(world, p["id"], lambda q: q["images"][0]["status"] == "done" and q["progress"]["steps_done"] > 100)
    world["worker"].stop()  # SIGTERM: a warm shutdown stops the projection before its next step
    q = c.get(f"/v1/jobs/{job}/projections/{p['id']}").json()
    assert q["status"] == "queued" and q["attempt"] == 1, (q, world["worker"].tail())
    with world["srv"].core.db.read() as s:  # handed back and sent again by the stopping worker itself
        from service.core.db.models import Projection

        assert s.get(Projection, p["id"]).enqueued_at is not None
    fresh = Worker(settings, world["root"] / "worker3.log", queues="light", name="light3").start()
    world["worker"] = fresh
    fresh.wait_ready()
    q = _wait(world, p["id"], lambda q: q["status"] in ("succeeded", "failed", "canceled"))
    assert q["status"] == "succeeded" and q["attempt"] == 2, q
    assert q["images"][0]["latent_id"] == first["images"][0]["latent_id"]  # not projected again
    assert all(im["status"] == "done" and im["steps"] == 100 for im in q["images"][1:]), q["images"]


def test_the_tenants_unfinished_projections_are_capped(world):
    c, job = world["c"], world["job"]
    png = _png(sample(c, job, 3, 1.0))
    started = [_start(c, job, [("x.png", png)], steps=5000, distance="pixel") for _ in range(2)]  # the default limit
    r = c.post(f"/v1/jobs/{job}/projections", files={"file": ("x.png", png, "image/png")})
    assert r.status_code == 429 and "too many projections" in r.json()["detail"] and r.headers["retry-after"]
    for p in started:
        assert c.post(f"/v1/jobs/{job}/projections/{p['id']}/cancel").status_code == 200
    for p in started:
        _wait(world, p["id"], lambda q: q["status"] == "canceled", timeout=30)


def _bad_image() -> bytes:
    return b"GIF89a not really"


@pytest.mark.parametrize("files,data,status,words", [
    ([], {"steps": "5"}, 422, "no image received"),
    ([("file", ("notes.txt", b"hello", "text/plain"))], {}, 422, "is not an image"),
    ([("file", ("x.gif", _bad_image(), "image/gif"))], {}, 422, "is not an image"),
    ([("file", ("x.png", "PNG", "image/png"))] * 9, {}, 422, "at most 8 images"),
    ([("file", ("x.png", "PNG", "image/png"))], {"steps": "0"}, 422, "steps must be in [1, 5000]"),
    ([("file", ("x.png", "PNG", "image/png"))], {"steps": "ten"}, 422, "steps: expected an integer"),
    ([("file", ("x.png", "PNG", "image/png"))], {"distance": "lpips"}, 422, "unknown distance 'lpips'"),
    ([("file", ("x.png", "PNG", "image/png"))], {"w_plus": "maybe"}, 422, "w_plus"),
    ([("file", ("x.png", "PNG", "image/png"))], {"colour": "red"}, 422, "unknown field(s) 'colour'"),
    ([("file", ("x.png", "PNG", "image/png"))], {"checkpoint": "nope"}, 404, "has no checkpoint 'nope'"),
    ([("upload", ("x.png", "PNG", "image/png"))], {}, 422, "send images as 'file'"),
])
def test_bad_uploads_are_4xx_with_messages(world, files, data, status, words):
    c, job = world["c"], world["job"]
    png = _png(np.zeros((8, 8, 3)))
    files = [(k, (n, png if d == "PNG" else d, t)) for k, (n, d, t) in files]
    # Form fields go as multipart parts too (a request with no file is still multipart).
    parts = files + [(k, (None, v)) for k, v in data.items()]
    r = c.post(f"/v1/jobs/{job}/projections", files=parts)
    assert r.status_code == status, (r.status_code, r.text)
    assert words in r.json()["detail"], r.json()["detail"]


def test_json_or_a_tiny_image_is_refused(world):
    c, job = world["c"], world["job"]
    r = c.post(f"/v1/jobs/{job}/projections", json={"file": "x"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
    r = c.post(f"/v1/jobs/{job}/projections", files={"file": ("t.png", _png(np.zeros((4, 40, 3))), "image/png")})
    assert r.status_code == 422 and "at least 8 pixels" in r.json()["detail"]
