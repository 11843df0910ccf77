"""API latency under load, loopback only, bounded in time.

Starts the real stack (`python -m service up`: API + one training worker, embedded broker, local
storage in a temp dir), uploads a dataset, starts a cpu-tiny job, and while it trains measures
GET /v1/jobs/{id} with 50 concurrent clients (p50/p99 latency, throughput). Then it cancels
the job (which stores a final checkpoint) and measures the latency of a 16-image grid from it
(cold: first load of the generator; warm: cached). Writes JSON.

    .venv/bin/python bench/api_load.py [--duration 20] [--clients 50] [--out bench/results/api_load.json]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
OBAMA = ROOT.parent / "shared" / "datasets" / "100-shot-obama"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dataset_zip() -> tuple[bytes, str]:
    buf = io.BytesIO()
    if OBAMA.is_dir():
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            for p in sorted(OBAMA.iterdir()):
                zf.write(p, f"obama/{p.name}")
        return buf.getvalue(), "100-shot-obama"
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        import numpy as np
        from PIL import Image

        for i in range(32):
            arr = (np.random.default_rng(i).random((64, 64, 3)) * 255).astype("uint8")
            b = io.BytesIO()
            Image.fromarray(arr).save(b, format="PNG")
            zf.writestr(f"synthetic/{i}.png", b.getvalue())
    return buf.getvalue(), "synthetic-32"


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


async def hammer(url: str, clients: int, duration: float) -> dict:
    lat: list[float] = []
    errors = 0
    stop = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        async def one() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                try:
                    r = await client.get(url)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    lat.append(time.perf_counter() - t0)
                else:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(clients)))
        wall = time.perf_counter() - t0
    return {
        "clients": clients, "duration_s": round(wall, 2), "requests": len(lat), "errors": errors,
        "throughput_rps": round(len(lat) / wall, 1),
        "p50_ms": round(1000 * pct(lat, 50), 2) if lat else None,
        "p99_ms": round(1000 * pct(lat, 99), 2) if lat else None,
        "mean_ms": round(1000 * statistics.fmean(lat), 2) if lat else None,
    }


def wait(client: httpx.Client, job_id: str, pred, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if pred(job):
            return job
        time.sleep(0.3)
    raise TimeoutError(f"job {job_id}: {job['status']} after {timeout} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--grid-repeats", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=600.0, help="hard bound on the whole run")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "api_load.json"))
    args = ap.parse_args()
    signal.alarm(int(args.timeout))  # bounded, whatever happens

    port = free_port()
    base = f"http://127.0.0.1:{port}"  # loopback only
    data_dir = Path(tempfile.mkdtemp(prefix="diggan-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGGAN_")}
    env.update(DIGGAN_SWEEP_INTERVAL_S="0", PYTHONPATH=str(ROOT))
    log = open(data_dir / "service.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "service", "up", "--host", "127.0.0.1", "--port", str(port),
                             "--data-dir", str(data_dir), "--workers", "1", "--log-level", "warning", "--grace", "20"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    result: dict = {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version()}
    try:
        client = httpx.Client(base_url=base, timeout=120)
        deadline = time.monotonic() + 120
        while True:
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("service did not become ready:\n" + (data_dir / "service.log").read_text()[-3000:])
            time.sleep(0.3)
        data, name = dataset_zip()
        t0 = time.perf_counter()
        r = client.post("/v1/datasets", files={"file": ("d.zip", data, "application/zip")})
        assert r.status_code == 201, r.text
        ds = r.json()
        result["upload"] = {"dataset": name, "images": ds["num_images"], "seconds": round(time.perf_counter() - t0, 2)}
        job = client.post("/v1/jobs", json={"dataset_id": ds["id"], "preset": "cpu-tiny", "kimg": 50,
                                            "tick_kimg": 0.016, "snapshot_kimg": 0.032}).json()
        wait(client, job["id"], lambda j: j["status"] == "running" and j["progress"]["kimg"] > 0, 300)

        result["loadavg_before"] = os.getloadavg()[0]
        # Context: the same clients on /healthz (no storage, no models) = the HTTP stack's ceiling here.
        result["healthz_baseline"] = asyncio.run(hammer(f"{base}/healthz", args.clients, min(5.0, args.duration)))
        result["get_job_under_load"] = asyncio.run(hammer(f"{base}/v1/jobs/{job['id']}", args.clients, args.duration))
        result["loadavg_after"] = os.getloadavg()[0]
        during = client.get(f"/v1/jobs/{job['id']}").json()
        result["get_job_under_load"]["job_status_during"] = during["status"]
        result["get_job_under_load"]["job_kimg_after"] = during["progress"]["kimg"]

        client.post(f"/v1/jobs/{job['id']}/cancel")
        final = wait(client, job["id"], lambda j: j["status"] in ("canceled", "failed", "succeeded"), 300)
        times = []
        for _ in range(1 + args.grid_repeats):
            t0 = time.perf_counter()
            r = client.post(f"/v1/jobs/{job['id']}/samples", json={"n": 16, "format": "grid"})
            times.append(time.perf_counter() - t0)
            assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
        warm = times[1:]
        result["grid_16"] = {
            "checkpoint": final["latest_checkpoint"], "resolution": final["config"]["network"]["resolution"],
            "cold_ms": round(1000 * times[0], 1), "warm_p50_ms": round(1000 * statistics.median(warm), 1),
            "warm_max_ms": round(1000 * max(warm), 1), "repeats": len(warm),
        }
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
