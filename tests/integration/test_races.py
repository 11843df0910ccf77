"""Black-box races with several processes on one PostgreSQL, one Redis broker and one S3 server:
two API replicas (`python -m service up --workers 0`, each sweeping) and two Celery workers.

(a) 20 rounds of 8 concurrent POSTs with one Idempotency-Key, split across both APIs: one job each;
(b) a cancel racing each job's completion, 50 times: every job ends terminal and its event stream ends;
(c) a worker frozen with SIGSTOP past its lease, its job taken over, then SIGCONT: it stops writing,
    every registered checkpoint matches its checksum, and the job succeeds;
(d) the broker's queue flushed while jobs are queued: the sweep re-sends them and every job runs.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import select

from service.core.db import Database
from service.core.db.models import Tick
from tests.e2e.harness import ApiProcess, Worker, images_zip, make_settings, wait_for
from tests.servers import free_port, start_redis_server, stop_redis_server

pytestmark = pytest.mark.slow

TERMINAL = ("succeeded", "failed", "canceled")
TINY = {"preset": "cpu-tiny", "kimg": 0.016, "tick_kimg": 0.008, "snapshot_kimg": 0.016}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3_server, postgres):
    root = tmp_path_factory.mktemp("races")
    redis_dir = tempfile.mkdtemp(prefix="diggan-races-redis-")
    port = free_port()
    redis = start_redis_server(port, data_dir=redis_dir)
    db_url = postgres.fresh_database()
    settings = make_settings(root, storage="s3", s3=s3_server, s3_bucket=f"races-{int(time.time())}",
                             broker_url=f"redis://127.0.0.1:{port}/0", database_url=db_url,
                             redis_url=f"redis://127.0.0.1:{port}/2", worker_heartbeat_s=1.0, stale_after_s=5.0,
                             sweep_interval_s=1.0, resend_queued_after_s=3.0, max_kimg=100)
    apis = [ApiProcess(settings, root / f"api{i}.log").start() for i in range(2)]
    workers = [Worker(settings, root / f"worker{i}.log", name=f"w{i}").start() for i in range(2)]
    try:
        for api in apis:
            api.wait_ready()
        for w in workers:
            w.wait_ready()
        ds = apis[0].client.post("/v1/datasets", files={"file": ("d.zip", images_zip(8), "application/zip")})
        assert ds.status_code == 201, ds.text
        yield {"apis": apis, "workers": workers, "ds": ds.json()["id"], "db_url": db_url, "redis_port": port,
               "settings": settings, "root": root}
    finally:
        for w in workers:
            if w.proc and w.proc.poll() is None:
                os.killpg(w.proc.pid, signal.SIGCONT)
            w.stop()
        for api in apis:
            api.stop()
        stop_redis_server(redis)
        shutil.rmtree(redis_dir, ignore_errors=True)


def _logs(cluster) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_bytes()[-3000:].decode(errors='replace')}"
                     for p in sorted(cluster["root"].glob("*.log")))


def _wait_job(cluster, job_id, until, timeout=240) -> dict:
    c = cluster["apis"][0].client

    def check():
        job = c.get(f"/v1/jobs/{job_id}").json()
        return job if until(job) else None

    try:
        return wait_for(check, timeout, f"job {job_id}")
    except TimeoutError as e:
        raise TimeoutError(f"{e}\n{_logs(cluster)}") from None


def test_a_one_idempotency_key_across_two_apis_makes_one_job(cluster):
    apis, ds = cluster["apis"], cluster["ds"]
    body = {"dataset_id": ds, **TINY}
    ids_per_round = []
    with ThreadPoolExecutor(8) as pool:
        for round_ in range(20):
            key = f"race-{round_}-{random.random()}"

            def post(i, key=key):  # bound now (pool.map runs it within this round anyway)
                return apis[i % 2].client.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})

            responses = list(pool.map(post, range(8)))
            assert all(r.status_code in (200, 202) for r in responses), [r.text for r in responses]
            assert sum(r.status_code == 202 for r in responses) == 1
            ids_per_round.append({r.json()["id"] for r in responses})
    assert all(len(ids) == 1 for ids in ids_per_round), ids_per_round
    made = {next(iter(ids)) for ids in ids_per_round}
    assert len(made) == 20
    listed = set()
    cursor = None
    while True:
        page = apis[1].client.get("/v1/jobs", params={"limit": 100, **({"cursor": cursor} if cursor else {})}).json()
        listed |= {j["id"] for j in page["data"]}
        if not (cursor := page["next_cursor"]):
            break
    assert made <= listed and len(listed) == 20  # no second job for any key
    for job_id in made:  # let them run, so the next test starts from an idle cluster
        _wait_job(cluster, job_id, lambda j: j["status"] in TERMINAL)


def _stream_until_end(api, job_id, timeout=240) -> list[str]:
    events = []
    with httpx.Client(base_url=api.url, timeout=httpx.Timeout(timeout, connect=10)) as c:
        with c.stream("GET", f"/v1/jobs/{job_id}/events") as r:
            for line in r.iter_lines():
                if line.startswith("event: "):
                    events.append(line[7:])
                    if events[-1] == "end":
                        break
    return events


def test_b_cancel_racing_completion_50_times(cluster):
    apis, ds = cluster["apis"], cluster["ds"]
    rng = random.Random(0)
    jobs = [apis[i % 2].client.post("/v1/jobs", json={"dataset_id": ds, **TINY}).json()["id"] for i in range(50)]

    def race(i_job):
        i, job_id = i_job
        api = apis[i % 2]
        wait_for(lambda: api.client.get(f"/v1/jobs/{job_id}").json()["status"] != "queued", 600, f"{job_id} starts",
                 interval=0.1)
        time.sleep(rng.uniform(0.0, 1.5))  # somewhere in the few seconds the job runs, or just after it ended
        r = api.client.post(f"/v1/jobs/{job_id}/cancel")
        assert r.status_code in (200, 409), r.text
        events = _stream_until_end(apis[(i + 1) % 2], job_id)  # followed on the other replica
        return events, apis[0].client.get(f"/v1/jobs/{job_id}").json()["status"]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(race, enumerate(jobs)))
    for events, status in results:
        assert events[-1] == "end" and events[0] == "state", events
        assert status in ("succeeded", "canceled"), (status, _logs(cluster))
    outcomes = [s for _, s in results]
    print(f"cancel vs completion: {outcomes.count('canceled')} canceled, {outcomes.count('succeeded')} succeeded")


def test_c_a_frozen_worker_is_fenced_out_after_takeover(cluster):
    apis, workers = cluster["apis"], cluster["workers"]
    c = apis[0].client
    job = c.post("/v1/jobs", json={"dataset_id": cluster["ds"], "preset": "cpu-tiny", "kimg": 0.4,
                                   "tick_kimg": 0.016, "snapshot_kimg": 0.032}).json()
    running = _wait_job(cluster, job["id"], lambda j: j["status"] == "running" and j["latest_checkpoint"])
    holder = next(w for w in workers if f"-{w.proc.pid}-" in running["worker_id"])
    other = next(w for w in workers if w is not holder)
    os.killpg(holder.proc.pid, signal.SIGSTOP)
    try:
        taken = _wait_job(cluster, job["id"], lambda j: j["attempt"] >= 2 and j["status"] == "running", timeout=120)
        assert f"-{other.proc.pid}-" in taken["worker_id"]
        time.sleep(2)  # the new holder trains on for a while
    finally:
        os.killpg(holder.proc.pid, signal.SIGCONT)
    done = _wait_job(cluster, job["id"], lambda j: j["status"] in TERMINAL, timeout=300)
    assert done["status"] == "succeeded", (done, _logs(cluster))
    wait_for(lambda: b"stopping without writing" in holder.log_path.read_bytes()
             or b"taken over" in holder.log_path.read_bytes(), 60, "the frozen worker notices", interval=0.5)

    for ck in c.get(f"/v1/jobs/{job['id']}/checkpoints").json()["data"]:
        data = c.get(f"/v1/jobs/{job['id']}/checkpoints/{ck['name']}").content
        assert hashlib.sha256(data).hexdigest() == ck["sha256"] and len(data) == ck["size"], ck
    resumed_at = max(r["kimg"] for r in done["resumes"] if r.get("attempt", 0) >= 2)
    db = Database(cluster["db_url"])
    try:
        with db.read() as s:
            ticks = s.execute(select(Tick.attempt, Tick.kimg).where(Tick.job_id == job["id"])).all()
    finally:
        db.dispose()
    assert ticks and all(a >= 2 for a, kimg in ticks if kimg > resumed_at + 1e-9), ticks  # the old worker wrote none


def test_d_a_flushed_queue_loses_no_job(cluster):
    import redis

    apis, workers = cluster["apis"], cluster["workers"]
    for w in workers:
        w.stop()  # nobody consumes: the messages wait in Redis
    jobs = [apis[i % 2].client.post("/v1/jobs", json={"dataset_id": cluster["ds"], **TINY}).json()["id"]
            for i in range(3)]
    for job_id in jobs:
        _wait_job(cluster, job_id, lambda j: j["enqueued_at"] is not None, timeout=30)
    r = redis.Redis(port=cluster["redis_port"], db=0)
    assert r.llen("train") >= 3
    r.flushdb()  # every message gone, as after a Redis restart without persistence
    assert r.llen("train") == 0
    r.close()
    for i in range(len(workers)):
        workers[i] = Worker(cluster["settings"], cluster["root"] / f"worker{i}-again.log", name=f"w{i}b").start()
    for job_id in jobs:
        done = _wait_job(cluster, job_id, lambda j: j["status"] in TERMINAL, timeout=300)
        assert done["status"] == "succeeded", (done, _logs(cluster))
        assert done["progress"]["fraction"] == 1.0
