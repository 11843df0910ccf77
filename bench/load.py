"""Load test with a real HTTP load generator (locust, in its own processes): GET /v1/jobs/{id} and the job list
against the same server's /healthz (the framework's ceiling), at fixed request rates, with and without a job
training on the same machine. Latency percentiles and the ratio to /healthz, in JSON.

    .venv/bin/pip install locust          # (the `bench` extra)
    .venv/bin/python bench/load.py [--rates 25,50,100] [--seconds 20] [--jobs 200] [--out bench/results/load.json]

The server is `python -m service up` (embedded SQLite, one training worker) with --jobs finished job records
in one tenant. Each (scenario, rate, endpoint) is one locust run of --seconds after a short ramp; the three
endpoints run back to back at each rate, so they meet the same machine. On a 2-core machine the generator,
the API and (in the "training" scenario) the worker share the cores: read the ratios, not the absolutes.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
ENDPOINTS = {"healthz": "/healthz", "get_job": "/v1/jobs/{job}", "list_jobs": "/v1/jobs?limit=20"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: Path, port: int, workers: int) -> subprocess.Popen:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DIGGAN_")}, "OMP_NUM_THREADS": "1",
           "DIGGAN_TORCH_THREADS": "1", "DIGGAN_SWEEP_INTERVAL_S": "5", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "service", "up", "--port", str(port), "--data-dir", str(data_dir),
                             "--workers", str(workers), "--log-level", "warning"], cwd=ROOT, env=env,
                            stdout=open(data_dir / "server.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    raise TimeoutError("server not ready")


def seed_jobs(data_dir: Path, n: int) -> str:
    """n finished jobs in the default tenant, straight into the database; returns one id."""
    sys.path.insert(0, str(ROOT))
    from service.core.db.models import Job
    from service.core.ids import new_id
    from service.core.services import open_core
    from service.core.settings import Settings

    core = open_core(Settings(data_dir=data_dir))
    rows = [{"id": new_id("job"), "tenant": "default", "dataset_id": "ds_" + "0" * 26, "status": "succeeded",
             "config": {"kimg": 1.0, "preset": "cpu-tiny"}, "request": {}, "kimg": 1.0, "total_kimg": 1.0,
             "charged_kimg": 1.0, "versions": {}, "resumes": [], "attempt": 1, "enqueue_count": 1, "meta": {}}
            for _ in range(n)]
    with core.db.write() as s:
        s.execute(Job.__table__.insert(), [{**r, "metadata": r.pop("meta")} for r in rows])
    core.close()
    return rows[-1]["id"]


def run_locust(url: str, path: str, name: str, rate: int, seconds: int, out: Path) -> dict:
    prefix = out / f"{name}-{rate}"
    env = {**os.environ, "DIGGAN_LOAD_PATH": path, "DIGGAN_LOAD_NAME": name}
    ramp = max(1, rate // 4)
    subprocess.run([sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "locustfile.py"), "--headless",
                    "-u", str(rate), "-r", str(ramp), "-t", f"{seconds + rate // ramp}s", "--host", url,
                    "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING"],
                   env=env, check=True, capture_output=True, timeout=seconds + 120)
    with open(f"{prefix}_stats.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["Name"] == name)
    count = int(row["Request Count"])
    return {"rate_target": rate, "requests": count, "failures": int(row["Failure Count"]),
            "achieved_rps": round(float(row["Requests/s"]), 1),
            "p50_ms": float(row["50%"]), "p90_ms": float(row["90%"]), "p99_ms": float(row["99%"]),
            "max_ms": float(row["Max Response Time"])}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rates", default="25,50,100")
    p.add_argument("--seconds", type=int, default=20)
    p.add_argument("--jobs", type=int, default=200)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "load.json")
    args = p.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="diggan-load-"))
    job = seed_jobs(tmp, args.jobs)
    port = free_port()
    server = start_server(tmp, port, workers=1)
    url = f"http://127.0.0.1:{port}"
    results: dict = {}
    try:
        for scenario in ("idle", "training"):
            if scenario == "training":
                zipped = ROOT / "bench" / "results" / "load-images.zip"
                _images_zip(zipped)
                ds = httpx.post(f"{url}/v1/datasets", files={"file": ("d.zip", zipped.read_bytes(), "application/zip")},
                                timeout=120).json()["id"]
                trainer = httpx.post(f"{url}/v1/jobs", json={"dataset_id": ds, "preset": "cpu-tiny", "kimg": 50},
                                     timeout=60).json()["id"]
                deadline = time.monotonic() + 120
                while httpx.get(f"{url}/v1/jobs/{trainer}").json()["status"] != "running":
                    if time.monotonic() > deadline:
                        raise TimeoutError("the training job did not start")
                    time.sleep(0.5)
            for rate in rates:
                row = {}
                for name, path in ENDPOINTS.items():
                    row[name] = run_locust(url, path.format(job=job), name, rate, args.seconds, tmp)
                for name in ("get_job", "list_jobs"):
                    for q in ("p50_ms", "p99_ms"):
                        base = row["healthz"][q]
                        row[name][f"{q}_ratio_to_healthz"] = round(row[name][q] / base, 2) if base else None
                results.setdefault(scenario, {})[str(rate)] = row
                print(json.dumps({scenario: {rate: row}}), flush=True)
            if scenario == "training":
                httpx.post(f"{url}/v1/jobs/{trainer}/cancel")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)
    out = {"bench": "load", "generator": "locust (separate processes, constant_throughput 1/s per user)",
           "seconds_per_run": args.seconds, "jobs_in_tenant": args.jobs, "results": results,
           "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_avg": os.getloadavg()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    return 0


def _images_zip(path: Path) -> None:
    import io
    import zipfile

    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(16):
            buf = io.BytesIO()
            Image.fromarray((np.random.default_rng(i).random((64, 64, 3)) * 255).astype("uint8")).save(buf, "PNG")
            zf.writestr(f"i/{i}.png", buf.getvalue())


if __name__ == "__main__":
    sys.exit(main())
