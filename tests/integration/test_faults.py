"""Faults really injected into a real stack: uvicorn + a Celery worker subprocess + a private Redis
(append-only) as the broker + a moto S3 server as storage. Tiny cpu-tiny jobs (a few 8-image steps).

- divergence through the API (absurd learning rates): one rollback with halved rates, then `failed`
  with a message that says so; cancel and sampling on that failed job are well-defined (409);
- two simultaneous cancels of a running job, sampling before its first checkpoint (409), then after
  the cancel's final checkpoint (200), cancel of a finished job (409);
- broker restart (Redis stopped and started while a job trains and another waits in the queue): no job
  lost, both finish; a job created while Redis is down is accepted (recorded, not yet sent) and the
  sweep sends it once Redis is back;
- storage outage (the S3 server stopped during training): the worker retries with backoff and the job
  carries on (or fails with a clear storage message); every stored checkpoint matches its checksum and
  loads with torch.load(weights_only=True).

The SIGKILL-resume and stale-sweep faults are tested in tests/e2e and tests/integration/test_api_jobs.py.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
import time

import pytest

from tests.e2e.harness import LiveServer, Worker, images_zip, make_settings, upload_zip, wait_job
from tests.servers import free_port, start_redis_server, stop_redis_server

pytestmark = pytest.mark.slow

TERMINAL = ("succeeded", "failed", "canceled")
SMALL = {"tick_kimg": 0.016, "snapshot_kimg": 0.032}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, s3_server):
    root = tmp_path_factory.mktemp("faults")
    redis_dir = tempfile.mkdtemp(prefix="diggan-faults-redis-")
    port = free_port()
    redis = start_redis_server(port, data_dir=redis_dir, appendonly=True)
    state = {"redis": redis, "port": port, "redis_dir": redis_dir}
    bucket = f"faults-{int(time.time())}"
    settings = make_settings(root, storage="s3", s3=s3_server, s3_bucket=bucket,
                             broker_url=f"redis://127.0.0.1:{port}/0", worker_heartbeat_s=1.0, max_kimg=100,
                             sweep_interval_s=1.0)
    worker = Worker(settings, root / "worker.log").start()
    try:
        with LiveServer(settings) as srv:
            worker.wait_ready()
            ds = upload_zip(srv.client, images_zip(8))
            assert ds.status_code == 201, ds.text
            # The same dict the finalizer reads: the broker test replaces state["redis"] when it restarts it.
            state.update({"srv": srv, "c": srv.client, "worker": worker, "ds": ds.json()["id"], "s3": s3_server})
            yield state
    finally:
        worker.stop()
        stop_redis_server(state["redis"])
        shutil.rmtree(redis_dir, ignore_errors=True)


def _job(stack, **body) -> dict:
    r = stack["c"].post("/v1/jobs", json={"dataset_id": stack["ds"], "preset": "cpu-tiny", **body})
    assert r.status_code == 202, r.text
    return r.json()


def _wait(stack, job_id, until, timeout=300) -> dict:
    return wait_job(stack["c"], job_id, until, timeout, stack["worker"])


def test_divergence_rolls_back_once_then_fails_clearly(stack):
    c = stack["c"]
    job = _job(stack, kimg=0.064, g_lr=1e8, d_lr=1e8, **SMALL)
    done = _wait(stack, job["id"], lambda j: j["status"] in TERMINAL)
    assert done["status"] == "failed", done
    err = done["error"]
    assert "diverged" in err and "rollback" in err and "halved" in err and "g_lr" in err, err
    rollbacks = [r for r in done["resumes"] if "divergence" in r.get("reason", "")]
    assert len(rollbacks) == 1 and rollbacks[0]["g_lr"] == pytest.approx(5e7)
    # Well-defined answers on the failed job.
    r = c.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 409 and "failed" in r.json()["detail"]
    r = c.post(f"/v1/jobs/{job['id']}/samples", json={"n": 1})
    assert r.status_code == 409 and "without storing a checkpoint" in r.json()["detail"]


def test_two_cancels_and_sampling_before_first_checkpoint(stack):
    c = stack["c"]
    job = _job(stack, kimg=5, tick_kimg=0.016, snapshot_kimg=4)  # no snapshot before the cancel
    running = _wait(stack, job["id"], lambda j: j["status"] == "running" and j["latest_tick"])
    assert running["latest_checkpoint"] is None
    r = c.post(f"/v1/jobs/{job['id']}/samples", json={"n": 1})
    assert r.status_code == 409 and "no checkpoint yet" in r.json()["detail"]

    results: list = []
    threads = [threading.Thread(target=lambda: results.append(c.post(f"/v1/jobs/{job['id']}/cancel"))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [200, 200], [r.text for r in results]
    assert {r.json()["status"] for r in results} <= {"cancelling", "canceled"}
    done = _wait(stack, job["id"], lambda j: j["status"] in TERMINAL)
    assert done["status"] == "canceled", done
    ckpts = c.get(f"/v1/jobs/{job['id']}/checkpoints").json()["data"]
    assert len(ckpts) == 1 and ckpts[0]["final"] is True  # one final checkpoint, not two
    again = c.post(f"/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "canceled"  # a third cancel: a no-op
    r = c.post(f"/v1/jobs/{job['id']}/samples", json={"n": 1})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"


def test_broker_restart_loses_no_job(stack):
    c = stack["c"]
    first = _job(stack, kimg=0.064, **SMALL)
    _wait(stack, first["id"], lambda j: j["status"] == "running")
    second = _job(stack, kimg=0.032, **SMALL)  # waits in Redis behind the first (one solo worker)

    stop_redis_server(stack["redis"])  # SIGTERM: Redis flushes its append-only file and exits
    # Created while the broker is down: recorded (queued, not yet sent); the sweep sends it later.
    while_down = _job(stack, kimg=0.016, tick_kimg=0.016, snapshot_kimg=0.016)
    assert while_down["status"] == "queued" and while_down["enqueued_at"] is None
    assert c.get("/readyz").status_code == 503
    time.sleep(2)
    stack["redis"] = start_redis_server(stack["port"], data_dir=stack["redis_dir"], appendonly=True)
    assert c.get("/readyz").status_code == 200

    for job in (first, second, while_down):
        done = _wait(stack, job["id"], lambda j: j["status"] in TERMINAL)
        assert done["status"] == "succeeded", (done, stack["worker"].tail())
        assert done["progress"]["fraction"] == 1.0
    third = _job(stack, kimg=0.016, tick_kimg=0.016, snapshot_kimg=0.016)  # the worker consumes new work
    assert _wait(stack, third["id"], lambda j: j["status"] in TERMINAL)["status"] == "succeeded"
    # A cancel after the end is refused, not silently accepted.
    r = c.post(f"/v1/jobs/{first['id']}/cancel")
    assert r.status_code == 409 and "succeeded" in r.json()["detail"]


def test_storage_outage_during_training(stack):
    from gan_core.training.checkpoint import load_checkpoint_bytes

    c, srv, s3 = stack["c"], stack["srv"], stack["s3"]
    job = _job(stack, kimg=0.096, **SMALL)
    _wait(stack, job["id"], lambda j: j["status"] == "running" and j["latest_tick"])
    with s3.outage():  # connections refused; the worker pauses training and retries with backoff
        time.sleep(4)
    done = _wait(stack, job["id"], lambda j: j["status"] in TERMINAL)
    # 4 s is well inside storage_outage_tolerance_s (120 s): the job carries on. (Past the bound it fails
    # with "the object store failed while training (...)": see worker/runner.py user_message.)
    assert done["status"] == "succeeded", done
    assert done["progress"]["kimg"] == pytest.approx(0.096)
    log = stack["worker"].log_path.read_bytes()
    assert b"storage looks down" in log or b"heartbeat for" in log, "the outage was not noticed by the worker"

    ckpts = c.get(f"/v1/jobs/{job['id']}/checkpoints").json()["data"]
    assert ckpts
    for ck in ckpts:
        data = c.get(f"/v1/jobs/{job['id']}/checkpoints/{ck['name']}").content
        assert hashlib.sha256(data).hexdigest() == ck["sha256"] and len(data) == ck["size"]
        assert "config" in load_checkpoint_bytes(data, expected_sha256=ck["sha256"])
    # Every checkpoint object in the store is whole, registered or not (S3 PUTs are atomic).
    for info in srv.store.list(f"tenants/default/jobs/{job['id']}/attempts/"):
        if info.key.endswith(".pt"):
            load_checkpoint_bytes(srv.store.get_bytes(info.key))
