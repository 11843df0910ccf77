"""Soak test: the real stack under mixed load for a few minutes, with one worker SIGKILLed at random.

Loopback only and bounded in time. Starts two API replicas (`python -m service up --workers 0`, each
with its sweep) and two Celery training workers, on PostgreSQL (a fresh database on --database-server),
a Redis broker (--redis, a database it flushes) and local storage in a temp dir. Every request goes
to one of the two APIs at random.
For --minutes it keeps several tiny cpu-tiny jobs queued and cancels some of them (queued or running),
uploads small datasets, samples from jobs that have checkpoints, and polls job state/metrics/lists with
concurrent clients. At a random moment it SIGKILLs one worker (its whole process group: no ack, no
final checkpoint) and restarts it a few seconds later. Then it cancels what is left and waits for every
job to end.

Reported (JSON, --out): jobs created / ended by status / lost (created but missing or not ended after
the drain; must be 0), requests by outcome (failed = 5xx or transport error; 4xx are counted apart,
e.g. 409 "no checkpoint yet"), p50/p99/max latency overall and per kind of request, and the kill.

    .venv/bin/python bench/soak.py [--minutes 3] [--out bench/results/soak.json] [--seed 0]
        [--database-server postgresql+psycopg://postgres@127.0.0.1:5432/postgres] [--redis redis://127.0.0.1:6379/14]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter, defaultdict
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
TERMINAL = {"succeeded", "failed", "canceled"}
JOB_BODY = {"preset": "cpu-tiny", "kimg": 0.064, "tick_kimg": 0.016, "snapshot_kimg": 0.032}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def images_zip(n: int, seed: int, size: int = 32) -> bytes:
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n):
            arr = (np.random.default_rng(seed * 1000 + i).random((size, size, 3)) * 255).astype("uint8")
            b = io.BytesIO()
            Image.fromarray(arr).save(b, format="PNG")
            zf.writestr(f"imgs/{i:03d}.png", b.getvalue())
    return buf.getvalue()


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(round(q * (len(s) - 1))))] * 1000, 2)


def fresh_database(server_url: str) -> str:
    """CREATE DATABASE on the server; returns its URL (dropped by drop_database)."""
    import sqlalchemy

    name = f"diggan_soak_{int(time.time())}_{os.getpid()}"
    engine = sqlalchemy.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


def drop_database(server_url: str, url: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    engine.dispose()


class Stack:
    def __init__(self, data_dir: Path, n_apis: int, database_url: str, redis_url: str):
        self.data_dir = data_dir
        self.ports = [free_port() for _ in range(n_apis)]
        self.urls = [f"http://127.0.0.1:{p}" for p in self.ports]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DIGGAN_")}
        self.env.update({
            "DIGGAN_DATA_DIR": str(data_dir), "DIGGAN_WORKER_HEARTBEAT_S": "1", "DIGGAN_STALE_AFTER_S": "8",
            "DIGGAN_SWEEP_INTERVAL_S": "1", "DIGGAN_TORCH_THREADS": "1", "DIGGAN_MAX_ATTEMPTS": "6",
            "DIGGAN_DEVICE": "cpu", "DIGGAN_MAX_KIMG": "10", "OMP_NUM_THREADS": "1",
            "DIGGAN_DATABASE_URL": database_url, "DIGGAN_BROKER_URL": redis_url, "DIGGAN_RESULT_BACKEND": redis_url,
            "DIGGAN_RESEND_QUEUED_AFTER_S": "30",
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        })
        self.logs = data_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.apis: list[subprocess.Popen] = []
        self.workers: dict[str, subprocess.Popen] = {}

    def start_apis(self) -> None:
        for i, port in enumerate(self.ports):
            cmd = [sys.executable, "-m", "service", "up", "--host", "127.0.0.1", "--port", str(port),
                   "--data-dir", str(self.data_dir), "--workers", "0", "--log-level", "warning"]
            self.apis.append(subprocess.Popen(cmd, env=self.env, cwd=ROOT, stdout=open(self.logs / f"api{i}.log", "ab"),
                                              stderr=subprocess.STDOUT, start_new_session=True))
        for i, url in enumerate(self.urls):
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if self.apis[i].poll() is not None:
                    raise RuntimeError(f"API exited: {(self.logs / f'api{i}.log').read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise TimeoutError("API not ready")
                time.sleep(0.3)

    def start_worker(self, name: str) -> None:
        from service.__main__ import worker_command

        cmd = worker_command("train,light", f"{name}-{time.monotonic_ns()}", "solo", 1, "INFO")
        cmd.append("--without-heartbeat")
        self.workers[name] = subprocess.Popen(cmd, env=self.env, cwd=ROOT, stdout=open(self.logs / f"{name}.log", "ab"),
                                              stderr=subprocess.STDOUT, start_new_session=True)

    def kill_worker(self, name: str) -> int:
        p = self.workers[name]
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(10)
        return p.pid

    def stop(self) -> None:
        for p in list(self.workers.values()) + self.apis:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in list(self.workers.values()) + self.apis:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)


class Load:
    def __init__(self, clients: list[httpx.AsyncClient], rng: random.Random):
        self.clients, self.rng = clients, rng
        self.lat: dict[str, list[float]] = defaultdict(list)
        self.outcome: Counter = Counter()
        self.codes: Counter = Counter()
        self.failures: list[str] = []
        self.jobs: list[str] = []
        self.datasets: list[str] = []
        self.canceled: set[str] = set()

    async def req(self, kind: str, method: str, url: str, **kw) -> httpx.Response | None:
        t0 = time.perf_counter()
        try:
            r = await self.rng.choice(self.clients).request(method, url, **kw)  # either replica
        except httpx.HTTPError as e:
            self.outcome["failed"] += 1
            self.failures.append(f"{kind} {method} {url}: {type(e).__name__}: {e}"[:300])
            return None
        self.lat[kind].append(time.perf_counter() - t0)
        self.codes[f"{kind} {r.status_code}"] += 1
        if r.status_code >= 500:
            self.outcome["failed"] += 1
            self.failures.append(f"{kind} {method} {url}: {r.status_code} {r.text[:200]}")
        elif r.status_code >= 400:
            self.outcome["rejected_4xx"] += 1
        else:
            self.outcome["ok"] += 1
        return r

    async def uploader(self, stop: float) -> None:
        i = 0
        while time.monotonic() < stop:
            r = await self.req("upload", "POST", "/v1/datasets",
                               files={"file": (f"s{i}.zip", images_zip(10, i), "application/zip")}, data={"name": f"soak-{i}"})
            if r is not None and r.status_code == 201:
                self.datasets.append(r.json()["id"])
            i += 1
            await asyncio.sleep(self.rng.uniform(2, 5))

    async def job_driver(self, stop: float) -> None:
        while time.monotonic() < stop:
            if self.datasets:
                r = await self.req("create_job", "POST", "/v1/jobs",
                                   json={"dataset_id": self.rng.choice(self.datasets), **JOB_BODY,
                                         "seed": self.rng.randrange(1000)})
                if r is not None and r.status_code == 202:
                    self.jobs.append(r.json()["id"])
            await asyncio.sleep(self.rng.uniform(3, 7))

    async def canceller(self, stop: float) -> None:
        while time.monotonic() < stop:
            await asyncio.sleep(self.rng.uniform(4, 9))
            live = [j for j in self.jobs if j not in self.canceled]
            if live and self.rng.random() < 0.6:
                j = self.rng.choice(live[-6:])  # recent ones: often still queued or running
                self.canceled.add(j)
                await self.req("cancel", "POST", f"/v1/jobs/{j}/cancel")

    async def sampler(self, stop: float) -> None:
        while time.monotonic() < stop:
            await asyncio.sleep(self.rng.uniform(2, 4))
            if self.jobs:
                j = self.rng.choice(self.jobs)
                await self.req("sample", "POST", f"/v1/jobs/{j}/samples", json={"n": 4, "psi": 0.7, "format": "grid"})

    async def poller(self, stop: float) -> None:
        while time.monotonic() < stop:
            roll = self.rng.random()
            if self.jobs and roll < 0.6:
                await self.req("get_job", "GET", f"/v1/jobs/{self.rng.choice(self.jobs)}")
            elif self.jobs and roll < 0.75:
                await self.req("metrics", "GET", f"/v1/jobs/{self.rng.choice(self.jobs)}/metrics")
            elif roll < 0.9:
                await self.req("list_jobs", "GET", "/v1/jobs", params={"limit": 20})
            else:
                await self.req("list_datasets", "GET", "/v1/datasets")
            await asyncio.sleep(0.05)


async def run(args: argparse.Namespace) -> dict:
    import redis

    rng = random.Random(args.seed)
    data_dir = Path(tempfile.mkdtemp(prefix="diggan-soak-"))
    redis.Redis.from_url(args.redis).flushdb()
    database_url = fresh_database(args.database_server)
    stack = Stack(data_dir, args.apis, database_url, args.redis)
    t_start = time.time()
    stack.start_apis()
    stack.start_worker("w1")
    stack.start_worker("w2")
    kill: dict = {}
    async with httpx.AsyncClient(base_url=stack.urls[0], timeout=120) as client, \
            httpx.AsyncClient(base_url=stack.urls[-1], timeout=120) as other:
        load = Load([client, other], rng)
        r = await load.req("upload", "POST", "/v1/datasets", files={"file": ("s.zip", images_zip(10, 999), "application/zip")})
        assert r is not None and r.status_code == 201, r.text if r is not None else "no response"
        load.datasets.append(r.json()["id"])
        duration = args.minutes * 60
        t0 = time.monotonic()
        stop = t0 + duration

        async def killer() -> None:
            await asyncio.sleep(rng.uniform(0.25, 0.6) * duration)
            victim = rng.choice(sorted(stack.workers))
            running = [j["id"] for j in (await client.get("/v1/jobs", params={"status": "running"})).json()["data"]]
            pid = stack.workers[victim].pid
            # The victim's own job (worker ids embed the pid): never cancelled, so it must be taken over.
            mine = [j for j in running if f"-{pid}-" in ((await client.get(f"/v1/jobs/{j}")).json().get("worker_id") or "")]
            load.canceled.update(mine)
            stack.kill_worker(victim)
            kill.update({"worker": victim, "pid": pid, "at_s": round(time.monotonic() - t0, 1), "running_jobs": running,
                         "victims_job": mine})
            await asyncio.sleep(rng.uniform(3, 8))
            stack.start_worker(victim)
            kill["restarted_at_s"] = round(time.monotonic() - t0, 1)

        tasks = [load.uploader(stop), load.job_driver(stop), load.canceller(stop), load.sampler(stop),
                 *[load.poller(stop) for _ in range(args.pollers)], killer()]
        await asyncio.gather(*tasks)

        # Drain: cancel what is still going, then every job must end.
        for j in load.jobs:
            st = (await client.get(f"/v1/jobs/{j}")).json().get("status")
            if st not in TERMINAL:
                await load.req("cancel", "POST", f"/v1/jobs/{j}/cancel")
        deadline = time.monotonic() + args.drain_s
        final: dict[str, dict | None] = {}
        while time.monotonic() < deadline:
            for j in load.jobs:
                if final.get(j) and final[j]["status"] in TERMINAL:
                    continue
                r = await client.get(f"/v1/jobs/{j}")
                final[j] = r.json() if r.status_code == 200 else None
            if all(final.get(j) and final[j]["status"] in TERMINAL for j in load.jobs):
                break
            await asyncio.sleep(1)

    lost = [j for j in load.jobs if not (final.get(j) and final[j]["status"] in TERMINAL)]
    statuses = Counter(final[j]["status"] for j in load.jobs if final.get(j))
    resumed = [j for j in load.jobs if final.get(j) and len(final[j].get("resumes") or []) > 0]
    retried = [j for j in load.jobs if final.get(j) and int(final[j].get("attempt") or 0) > 1]
    killed_jobs = {j: {"status": (final.get(j) or {}).get("status"), "attempts": (final.get(j) or {}).get("attempt"),
                       "resumed_from_kimg": [r.get("kimg") for r in (final.get(j) or {}).get("resumes") or []]}
                   for j in kill.get("running_jobs", [])}
    victims_lost = [j for j in kill.get("victims_job", []) if (final.get(j) or {}).get("status") != "succeeded"]
    errors = Counter((final[j].get("error") or "")[:120] for j in load.jobs if final.get(j) and final[j]["status"] == "failed")
    all_lat = [x for v in load.lat.values() for x in v]
    stack.stop()
    drop_database(args.database_server, database_url)
    result = {
        "bench": "soak",
        "minutes": args.minutes,
        "wall_s": round(time.time() - t_start, 1),
        "jobs": {"created": len(load.jobs), "lost": len(lost), "lost_ids": lost, "by_status": dict(statuses),
                 "cancel_requests": len(load.canceled), "resumed_from_checkpoint": len(resumed),
                 "taken_over_after_worker_loss": len(retried), "failed_reasons": dict(errors)},
        "kill": {**kill, "running_jobs_final_status": killed_jobs, "victims_job_not_succeeded": victims_lost},
        "datasets_uploaded": len(load.datasets),
        "requests": {"total": sum(load.outcome.values()), **dict(load.outcome), "failed": load.outcome.get("failed", 0),
                     "failures": load.failures[:20]},
        "latency_ms": {"p50": pct(all_lat, 0.5), "p99": pct(all_lat, 0.99), "max": pct(all_lat, 1.0),
                       "by_kind": {k: {"n": len(v), "p50": pct(v, 0.5), "p99": pct(v, 0.99), "max": pct(v, 1.0)}
                                   for k, v in sorted(load.lat.items())}},
        "status_codes": dict(sorted(load.codes.items())),
        "config": {"pollers": args.pollers, "apis": args.apis, "workers": 2, "database": "postgresql",
                   "broker": "redis", "job": JOB_BODY, "stale_after_s": 8, "seed": args.seed, "drain_s": args.drain_s},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_avg": os.getloadavg()},
        "data_dir": str(data_dir),
    }
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--pollers", type=int, default=6)
    p.add_argument("--drain-s", type=float, default=180.0, help="how long jobs get to end after the load stops")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--apis", type=int, default=2, help="API replicas")
    p.add_argument("--database-server", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                   help="a PostgreSQL server where the soak may create (and then drop) a database")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/14", help="broker; this database is flushed")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "soak.json"))
    args = p.parse_args()
    if not 0 < args.minutes <= 60:
        p.error("--minutes must be in (0, 60]")
    result = asyncio.run(run(args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    brief = {k: result[k] for k in ("jobs", "kill")}
    print(json.dumps({**brief, "requests": {k: v for k, v in result["requests"].items() if k != "failures"},
                      "latency_ms": {k: result["latency_ms"][k] for k in ("p50", "p99", "max")}}, indent=2))
    return 0 if result["jobs"]["lost"] == 0 and result["requests"]["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
