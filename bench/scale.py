"""Scale: GET /v1/jobs (first page) and POST /v1/jobs with 10,000 job records for one tenant, on the
database-backed service (this checkout, embedded SQLite and PostgreSQL) and, side by side in the same
run, on version 0.1 (JSON records in the object store) when given a checkout of it.

    git worktree add /tmp/diggan-0.1 cf2a124          # the last commit with JSON records
    .venv/bin/python bench/scale.py --before /tmp/diggan-0.1 [--jobs 10000] [--requests 200]

Each arm is a real `python -m service up --workers 0` process with its own data directory; records are
seeded through each version's own repository code (not over HTTP, which would take hours for 0.1), a
dataset is uploaded over HTTP, then the arms are measured interleaved (request i of every arm, then
request i+1), so machine noise falls on all of them alike. Writes JSON (default bench/results/scale.json)
with p50/p99 per arm and the ratios to 0.1.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
TENANT = "default"

SEED_OLD = """
import sys
from service.jobs.records import JobRecord, JobRepo, JobStatus, Progress
from service.storage import LocalStore
repo = JobRepo(LocalStore(sys.argv[1] + "/store"))
from service.ids import new_id
for i in range(int(sys.argv[2])):
    status = JobStatus.succeeded if i % 10 else JobStatus.canceled
    repo.create(JobRecord(id=new_id("job"), tenant="default", dataset_id="ds_" + "0" * 26, status=status,
                          config={"kimg": 1.0, "preset": "cpu-tiny"}, progress=Progress(kimg=1.0, total_kimg=1.0)))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def images_zip(n: int = 8, size: int = 32) -> bytes:
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(n):
            b = io.BytesIO()
            Image.fromarray((np.random.default_rng(i).random((size, size, 3)) * 255).astype("uint8")).save(b, "PNG")
            zf.writestr(f"i/{i}.png", b.getvalue())
    return buf.getvalue()


def seed_new(data_dir: Path, database_url: str, n: int) -> None:
    """10k finished jobs through the current code's models (one bulk INSERT)."""
    from service.core.db.models import Job
    from service.core.ids import new_id
    from service.core.services import open_core
    from service.core.settings import Settings

    core = open_core(Settings(data_dir=data_dir, database_url=database_url))
    rows = [{"id": new_id("job"), "tenant": TENANT, "dataset_id": "ds_" + "0" * 26,
             "status": "succeeded" if i % 10 else "canceled", "config": {"kimg": 1.0, "preset": "cpu-tiny"},
             "request": {}, "kimg": 1.0, "total_kimg": 1.0, "charged_kimg": 1.0, "versions": {}, "resumes": [],
             "attempt": 1, "enqueue_count": 1} for i in range(n)]
    with core.db.write() as s:
        for start in range(0, n, 1000):
            s.execute(Job.__table__.insert(), rows[start:start + 1000])
    core.close()


class Arm:
    def __init__(self, name: str, checkout: Path, env: dict[str, str], data_dir: Path):
        self.name, self.checkout, self.data_dir = name, checkout, data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("DIGGAN_")}, **env,
                    "DIGGAN_DATA_DIR": str(data_dir), "DIGGAN_SWEEP_INTERVAL_S": "0", "PYTHONPATH": str(checkout),
                    "OMP_NUM_THREADS": "1"}
        self.get_s: list[float] = []
        self.post_s: list[float] = []

    def start(self) -> None:
        log = open(self.data_dir / "api.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "service", "up", "--workers", "0", "--port", str(self.port),
                                      "--data-dir", str(self.data_dir), "--log-level", "warning"], cwd=self.checkout,
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        self.client = httpx.Client(base_url=self.url, timeout=120)
        r = self.client.post("/v1/datasets", files={"file": ("d.zip", images_zip(), "application/zip")})
        assert r.status_code == 201, r.text
        self.dataset = r.json()["id"]

    def measure_once(self) -> None:
        t0 = time.perf_counter()
        r = self.client.get("/v1/jobs", params={"limit": 20})
        self.get_s.append(time.perf_counter() - t0)
        assert r.status_code == 200 and len(r.json()["data"]) == 20, r.text[:300]
        t0 = time.perf_counter()
        r = self.client.post("/v1/jobs", json={"dataset_id": self.dataset, "kimg": 0.016, "tick_kimg": 0.016})
        self.post_s.append(time.perf_counter() - t0)
        assert r.status_code == 202, r.text[:300]

    def stop(self) -> None:
        self.client.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return round(s[min(len(s) - 1, int(round(q * (len(s) - 1))))] * 1000, 2)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", type=Path, help="a checkout of version 0.1 (JSON records), e.g. a worktree of cf2a124")
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--database-server", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                   help="PostgreSQL server for the postgres arm ('' skips it)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale.json")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    tmp = Path(tempfile.mkdtemp(prefix="diggan-scale-"))
    arms: list[Arm] = []
    seeded: dict[str, float] = {}

    t0 = time.monotonic()
    d = tmp / "sqlite"
    d.mkdir()
    seed_new(d, f"sqlite:///{d / 'diggan.db'}", args.jobs)
    seeded["database-sqlite"] = time.monotonic() - t0
    arms.append(Arm("database-sqlite", ROOT, {}, d))
    pg_db = None
    if args.database_server:
        sys.path.insert(0, str(ROOT / "bench"))
        from soak import drop_database, fresh_database

        pg_db = fresh_database(args.database_server)
        d = tmp / "postgres"
        d.mkdir()
        t0 = time.monotonic()
        seed_new(d, pg_db, args.jobs)
        seeded["database-postgres"] = time.monotonic() - t0
        arms.append(Arm("database-postgres", ROOT, {"DIGGAN_DATABASE_URL": pg_db}, d))
    if args.before:
        d = tmp / "before"
        d.mkdir()
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-c", SEED_OLD, str(d), str(args.jobs)], cwd=args.before, check=True,
                       env={**os.environ, "PYTHONPATH": str(args.before)})
        seeded["json-records-0.1"] = time.monotonic() - t0
        arms.append(Arm("json-records-0.1", args.before, {}, d))
    try:
        for arm in arms:
            arm.start()
        for _ in range(args.requests):  # interleaved: request i of every arm, then i+1
            for arm in arms:
                arm.measure_once()
    finally:
        for arm in arms:
            arm.stop()
        if pg_db:
            drop_database(args.database_server, pg_db)
    result = {"bench": "scale", "jobs_per_tenant": args.jobs, "requests_per_arm": args.requests,
              "seed_s": {k: round(v, 1) for k, v in seeded.items()},
              "arms": {a.name: {"get_jobs_first_page_ms": {"p50": pct(a.get_s, 0.5), "p99": pct(a.get_s, 0.99)},
                                "post_job_ms": {"p50": pct(a.post_s, 0.5), "p99": pct(a.post_s, 0.99)}} for a in arms},
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_avg": os.getloadavg()}}
    before = result["arms"].get("json-records-0.1")
    if before:
        result["ratio_to_0.1"] = {
            name: {f"{what}_{q}": round(arm[what][q] / before[what][q], 4)
                   for what in ("get_jobs_first_page_ms", "post_job_ms") for q in ("p50", "p99")}
            for name, arm in result["arms"].items() if name != "json-records-0.1"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
