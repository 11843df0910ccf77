"""The product end to end on CPU: upload 100-shot-obama as a zip, train a cpu-tiny job for a
fraction of a kimg on a real worker process, poll until it succeeds, fetch a grid, read metrics.

Run against both storage backends (local directory; S3 via a real moto server process) and
both brokers (the embedded SQLite one; real Redis). Plus the crash test: SIGKILL the worker
mid-training; a new worker resumes the job from its last checkpoint and it succeeds.
"""

from __future__ import annotations

import hashlib
import io

import httpx
import pytest
from PIL import Image

from tests.e2e.harness import TINY_JOB, LiveServer, Worker, make_settings, wait_job, zip_folder

pytestmark = [pytest.mark.slow, pytest.mark.needs_shared]

COMBOS = [("local", "embedded"), ("s3", "embedded"), ("local", "redis"), ("s3", "redis")]


@pytest.fixture
def stack_settings(request, tmp_path):
    storage, broker = request.param
    kw: dict = {}
    if storage == "s3":
        kw.update(storage="s3", s3=request.getfixturevalue("s3_server"), s3_bucket=request.getfixturevalue("s3_bucket"))
    if broker == "redis":
        kw["broker_url"] = request.getfixturevalue("redis_url")
    return make_settings(tmp_path, worker_heartbeat_s=1.0, **kw)


@pytest.fixture(scope="module")
def obama_zip(shared_datasets) -> bytes:
    return zip_folder(shared_datasets / "100-shot-obama")


@pytest.mark.parametrize("stack_settings", COMBOS, ids=[f"{s}-{b}" for s, b in COMBOS], indirect=True)
def test_upload_train_poll_sample(stack_settings, obama_zip, tmp_path):
    worker = Worker(stack_settings, tmp_path / "worker.log").start()  # boots while we upload
    try:
        with LiveServer(stack_settings) as srv:
            c = srv.client
            assert c.get("/readyz").status_code == 200
            r = c.post("/v1/datasets", files={"file": ("obama.zip", obama_zip, "application/zip")}, data={"name": "obama"})
            assert r.status_code == 201, r.text
            ds = r.json()
            assert ds["num_images"] == 100 and ds["resolution"] == 256

            r = c.post("/v1/jobs", json={"dataset_id": ds["id"], **TINY_JOB}, headers={"Idempotency-Key": "e2e"})
            assert r.status_code == 202, r.text
            job = wait_job(c, r.json()["id"], lambda j: j["status"] in ("succeeded", "failed", "canceled"), 300, worker)
            assert job["status"] == "succeeded", (job["error"], worker.tail())
            assert job["progress"]["fraction"] == 1.0 and job["progress"]["kimg"] >= TINY_JOB["kimg"] - 1e-6
            assert job["latest_tick"]["kimg"] == job["progress"]["kimg"] and job["finished_at"]

            res = job["config"]["network"]["resolution"]
            r = c.post(f"/v1/jobs/{job['id']}/samples", json={"n": 16, "psi": 0.7, "format": "grid"})
            assert r.status_code == 200 and r.headers["content-type"] == "image/png"
            img = Image.open(io.BytesIO(r.content))
            img.verify()
            assert img.format == "PNG" and img.size == (4 * (res + 2) + 2,) * 2  # 4x4 grid, 2 px padding

            m = c.get(f"/v1/jobs/{job['id']}/metrics").json()
            ticks = m["ticks"]
            assert len(ticks) >= 2 and [t["tick"] for t in ticks] == list(range(1, len(ticks) + 1))
            for key in ("loss_G", "loss_D", "dig", "grad_norm_real", "grad_norm_fake", "augment_p", "sec_per_kimg"):
                assert key in ticks[-1]
            assert m["snapshots"] and m["snapshots"][-1]["final"] is True

            ckpts = c.get(f"/v1/jobs/{job['id']}/checkpoints").json()["data"]
            latest = ckpts[-1]
            r = c.get(f"/v1/jobs/{job['id']}/checkpoints/{latest['name']}", params={"redirect": "true"},
                      follow_redirects=False)
            if stack_settings.storage == "s3":
                assert r.status_code == 307
                body = httpx.get(r.headers["location"], timeout=30).content  # the presigned URL works
            else:
                assert r.status_code == 200
                body = r.content
            assert hashlib.sha256(body).hexdigest() == latest["sha256"]
    finally:
        worker.stop()


def test_worker_sigkill_mid_training_resumes_from_last_checkpoint(tmp_path, shared_datasets):
    # Fast failure detection for the test: 1 s heartbeats, stale after 5 s, the API sweeps every second.
    settings = make_settings(tmp_path, worker_heartbeat_s=1.0, stale_after_s=5.0, sweep_interval_s=1.0)
    body = {"preset": "cpu-tiny", "kimg": 0.096, "tick_kimg": 0.016, "snapshot_kimg": 0.032}
    first = Worker(settings, tmp_path / "worker1.log", name="first").start()
    second = Worker(settings, tmp_path / "worker2.log", name="second")
    try:
        with LiveServer(settings) as srv:
            c = srv.client
            zipped = zip_folder(shared_datasets / "100-shot-obama", limit=20)
            ds = c.post("/v1/datasets", files={"file": ("o.zip", zipped, "application/zip")}).json()
            job_id = c.post("/v1/jobs", json={"dataset_id": ds["id"], **body}).json()["id"]
            job = wait_job(c, job_id, lambda j: j["latest_checkpoint"] is not None, 240, first)
            assert job["status"] == "running" and job["progress"]["kimg"] < body["kimg"], "finished before the kill"
            first.kill()  # SIGKILL: no ack, no final checkpoint, no status update
            ckpt_kimg = c.get(f"/v1/jobs/{job_id}/checkpoints").json()["data"][-1]["kimg"]
            assert ckpt_kimg > 0

            second.start()
            done = wait_job(c, job_id, lambda j: j["status"] in ("succeeded", "failed", "canceled"), 300, second)
            assert done["status"] == "succeeded", (done["error"], second.tail())
            assert done["attempt"] == 2
            assert done["resumes"] and done["resumes"][0]["kimg"] == pytest.approx(ckpt_kimg)
            assert done["resumes"][0]["kimg"] > 0  # resumed, not restarted

            ticks = c.get(f"/v1/jobs/{job_id}/metrics").json()["ticks"]
            kimgs = [t["kimg"] for t in ticks]
            assert kimgs == sorted(kimgs) and len(set(kimgs)) == len(kimgs)  # no restart from zero, no duplicates
            after = [t for t in ticks if t["kimg"] > ckpt_kimg]
            assert after and after[0]["kimg"] > ckpt_kimg > 0
            assert b"resumes from" in (tmp_path / "worker2.log").read_bytes()
    finally:
        first.kill()
        second.stop()
