"""A real worker process trains real (tiny) jobs: sampling while training, cancel with a final
checkpoint, checkpoint download with its checksum, and duplicate deliveries dropped."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image

from service.core.queue import enqueue_train
from tests.e2e.harness import LiveServer, Worker, images_zip, make_settings, server_with_worker, upload_zip, wait_job

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with server_with_worker(tmp_path_factory.mktemp("train")) as (srv, worker):
        yield srv, worker


def test_sample_while_training_then_cancel_keeps_final_checkpoint(stack):
    srv, worker = stack
    c = srv.client
    ds = upload_zip(c, images_zip(8)).json()
    # Long enough that it is still running when we cancel; a snapshot every 2 ticks.
    job = c.post("/v1/jobs", json={"dataset_id": ds["id"], "kimg": 5, "tick_kimg": 0.016, "snapshot_kimg": 0.032}).json()
    job = wait_job(c, job["id"], lambda j: j["latest_checkpoint"] is not None, 180, worker)
    assert job["status"] == "running" and job["progress"]["kimg"] > 0 and job["heartbeat_at"]

    r = c.post(f"/v1/jobs/{job['id']}/samples", json={"n": 4, "psi": 0.5})  # sampling while it trains
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    res = job["config"]["network"]["resolution"]  # the preset's; the trainer resizes the dataset to it
    assert Image.open(io.BytesIO(r.content)).size == (2 * (res + 2) + 2,) * 2

    r = c.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelling"
    assert c.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] in ("cancelling", "canceled")  # idempotent
    done = wait_job(c, job["id"], lambda j: j["status"] in ("canceled", "failed", "succeeded"), 120, worker)
    assert done["status"] == "canceled", done
    ckpts = c.get(f"/v1/jobs/{job['id']}/checkpoints").json()["data"]
    final = ckpts[-1]
    assert final["final"] is True and final["name"] == done["latest_checkpoint"]
    assert final["kimg"] == pytest.approx(done["progress"]["kimg"])
    assert done["progress"]["kimg"] < 5

    # Download it: streamed, with its checksum; `latest` is an alias.
    r = c.get(f"/v1/jobs/{job['id']}/checkpoints/latest")
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == final["sha256"] == r.headers["x-checksum-sha256"]
    assert c.get(f"/v1/jobs/{job['id']}/checkpoints/{final['name']}/grid").headers["content-type"] == "image/png"
    assert c.get(f"/v1/jobs/{job['id']}/checkpoints/ckpt-99999.000.pt").status_code == 404

    # Zip and stored-json samples from the final checkpoint.
    r = c.post(f"/v1/jobs/{job['id']}/samples", json={"seeds": [3, 5, 7], "format": "zip"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    r = c.post(f"/v1/jobs/{job['id']}/samples", json={"seeds": [3, 5], "format": "json", "checkpoint": final["name"]})
    assert r.status_code == 201
    images = r.json()["images"]
    assert [i["seed"] for i in images] == [3, 5]
    img = c.get(images[1]["url"])
    assert img.status_code == 200 and Image.open(io.BytesIO(img.content)).size == (res, res)
    assert c.get(f"/v1/jobs/{job['id']}/samples/{r.json()['id']}").json()["id"] == r.json()["id"]

    # The metrics series carries the tick stats the trainer reports.
    m = c.get(f"/v1/jobs/{job['id']}/metrics").json()
    assert m["ticks"] and {"loss_G", "loss_D", "dig", "augment_p", "sec_per_kimg"} <= set(m["ticks"][0])
    assert m["snapshots"][-1]["final"] is True


def test_duplicate_delivery_of_finished_job_is_dropped(stack):
    srv, worker = stack
    c = srv.client
    ds = upload_zip(c, images_zip(8)).json()
    job = c.post("/v1/jobs", json={"dataset_id": ds["id"], "kimg": 0.016, "tick_kimg": 0.016}).json()
    done = wait_job(c, job["id"], lambda j: j["status"] in ("succeeded", "failed"), 120, worker)
    assert done["status"] == "succeeded", done
    enqueue_train(srv.app.state.celery, "default", job["id"])  # a re-delivery after the fact
    wait_job(c, job["id"], lambda j: True, 1)
    import time

    deadline = time.monotonic() + 30
    while b"duplicate delivery dropped" not in worker.log_path.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.2)
    after = c.get(f"/v1/jobs/{job['id']}").json()
    assert after["status"] == "succeeded" and after["attempt"] == done["attempt"] == 1
    assert b"duplicate delivery dropped" in worker.log_path.read_bytes()


def test_sigterm_checkpoints_requeues_and_another_worker_resumes(tmp_path):
    """Warm shutdown (docker stop, Ctrl-C on `make run`): the job stores a final checkpoint, goes back
    to `queued`, and the next worker resumes it from there."""
    settings = make_settings(tmp_path, worker_heartbeat_s=1.0, sweep_interval_s=1.0)
    first = Worker(settings, tmp_path / "w1.log", name="first").start()
    second = Worker(settings, tmp_path / "w2.log", name="second")
    try:
        with LiveServer(settings) as srv:
            c = srv.client
            ds = upload_zip(c, images_zip(8)).json()
            job = c.post("/v1/jobs", json={"dataset_id": ds["id"], "kimg": 0.064, "tick_kimg": 0.016,
                                           "snapshot_kimg": 0.064}).json()
            wait_job(c, job["id"], lambda j: j["progress"]["kimg"] > 0, 180, first)
            first.stop(90)
            assert first.proc.returncode == 0
            stopped = c.get(f"/v1/jobs/{job['id']}").json()
            assert stopped["status"] in ("queued", "running"), stopped  # running: the new worker already took it
            ckpt = c.get(f"/v1/jobs/{job['id']}/checkpoints").json()["data"][-1]
            assert ckpt["final"] and ckpt["kimg"] > 0
            second.start()
            done = wait_job(c, job["id"], lambda j: j["status"] in ("succeeded", "failed"), 180, second)
            assert done["status"] == "succeeded", done["error"]
            assert done["resumes"][0]["kimg"] == pytest.approx(ckpt["kimg"])
    finally:
        first.kill()
        second.stop()


def test_jobs_are_routed_to_a_worker_owning_enough_gpus(tmp_path):
    """Two CPU workers on one broker, owning 1 and 2 GPUs (DIGGAN_WORKER_GPUS). Jobs asking gpus 2 are run only
    by the 2-GPU worker, as two gloo processes (it is rank 0 and records ticks and checkpoints; a follower is rank
    1), even while it is busy and the other is idle; a job asking 3 waits queued for a worker owning 3. A message
    on the wrong queue (sent by hand) still fails with a message: the worker's own last guard."""
    one = make_settings(tmp_path, worker_heartbeat_s=1.0, worker_gpus=1, max_job_gpus=3)
    two = make_settings(tmp_path, worker_heartbeat_s=1.0, worker_gpus=2, max_job_gpus=3)
    small, big = Worker(one, tmp_path / "one.log", name="one"), Worker(two, tmp_path / "two.log", name="two")
    try:
        # One after the other: two workers declaring `train` at once on the SQLite broker can race on its table.
        small.start().wait_ready()
        big.start().wait_ready()
        with LiveServer(one) as srv:
            assert b"owns 2 GPU(s); training queues: train, train-gpus-2" in big.log_path.read_bytes()
            assert b"owns 1 GPU(s); training queues: train" in small.log_path.read_bytes()
            assert b"train-gpus" not in small.log_path.read_bytes()
            c = srv.client
            ds = upload_zip(c, images_zip(8)).json()
            body = {"dataset_id": ds["id"], "kimg": 0.016, "tick_kimg": 0.008, "gpus": 2}
            r = c.post("/v1/jobs", json={**body, "gpus": 3, "batch_size": 6})
            assert r.status_code == 202, r.text
            waiting = r.json()
            first = c.post("/v1/jobs", json=body).json()
            second = c.post("/v1/jobs", json={**body, "kimg": 0.008}).json()  # sent while the big worker is busy
            for job in (first, second):
                done = wait_job(c, job["id"], lambda j: j["status"] in ("succeeded", "failed"), 240, big)
                assert done["status"] == "succeeded", done
                assert done["config"]["gpus"] == 2 and done["attempt"] == 1
                assert f"-{big.proc.pid}-" in srv.core.jobs.find("default", job["id"]).worker_id  # the 2-GPU worker
            assert len(c.get(f"/v1/jobs/{first['id']}/metrics").json()["ticks"]) == 2
            assert c.get(f"/v1/jobs/{first['id']}/checkpoints").json()["data"][-1]["final"] is True
            assert big.log_path.read_bytes().count(b"2 ranks on cpu") == 2
            assert b"2 ranks on cpu" not in small.log_path.read_bytes()
            assert c.get(f"/v1/jobs/{waiting['id']}").json()["status"] == "queued"  # no worker owns 3

            enqueue_train(srv.app.state.celery, "default", waiting["id"])  # by hand on `train`: the wrong queue
            failed = wait_job(c, waiting["id"], lambda j: j["status"] in ("succeeded", "failed"), 120, big)
            assert failed["status"] == "failed" and "asks for gpus=3" in failed["error"], failed
            assert "'train-gpus-3'" in failed["error"]
    finally:
        small.stop()
        big.stop()
