"""Test harness: the real app over real HTTP (uvicorn in a thread), real Celery workers
(subprocesses), and settings that point both at the same storage and broker.

Used by tests/integration/test_api_*.py and tests/e2e/*.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from service.core.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
TERMINAL = {"succeeded", "failed", "canceled"}

# A fast job: 6 cpu-tiny iterations (batch 8), a tick every 2 and a snapshot every 4 iterations.
TINY_JOB = {"preset": "cpu-tiny", "kimg": 0.048, "tick_kimg": 0.016, "snapshot_kimg": 0.032}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_settings(data_dir: Path, *, storage: str = "local", broker_url: str = "", s3: Any = None,
                  s3_bucket: str = "diggan-test", database_url: str = "", **overrides: Any) -> Settings:
    """Settings for a test server and its workers. `database_url` "" = a SQLite file under data_dir."""
    kw: dict[str, Any] = {"data_dir": data_dir, "storage": storage, "broker_url": broker_url,
                          "result_backend": broker_url if broker_url.startswith("redis") else "",
                          "database_url": database_url, "sweep_interval_s": 0, "torch_threads": 1}
    if storage == "s3":
        kw.update(s3_endpoint=s3.endpoint, s3_access_key=s3.access_key, s3_secret_key=s3.secret_key,
                  s3_bucket=s3_bucket, s3_region=getattr(s3, "region", None))
    kw.update(overrides)
    return Settings(**kw)


def settings_env(settings: Settings) -> dict[str, str]:
    """The same settings as DIGGAN_* variables, for worker subprocesses."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGGAN_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        if isinstance(value, (list, dict)):
            import json

            value = json.dumps(value)
        env[f"DIGGAN_{name.upper()}"] = str(value)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


class LiveServer:
    """create_app(settings) served by uvicorn on a free loopback port, in a thread."""

    def __init__(self, settings: Settings):
        from service.api.main import create_app

        self.settings = settings
        self.app = create_app(settings)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        self.client = httpx.Client(base_url=self.url, timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(10)

    @property
    def store(self):
        return self.app.state.core.store

    @property
    def core(self):
        return self.app.state.core


class Worker:
    """A real Celery worker subprocess on the train (and light) queues."""

    def __init__(self, settings: Settings, log_path: Path, queues: str = "train,light", name: str = "w"):
        self.cmd = [sys.executable, "-m", "celery", "-A", "worker.celery_app:app", "worker", "-Q", queues,
                    "-P", "solo", "-c", "1", "-n", f"{name}-{os.getpid()}-{time.monotonic_ns()}@%h", "-l", "INFO",
                    "--without-gossip", "--without-mingle", "--without-heartbeat"]
        self.env = settings_env(settings)
        self.settings = settings
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> Worker:
        if self.settings.embedded_broker:  # as `service up` does before its workers: no race to create queues
            from service.core.queue import declare_service_queues, make_celery, prepare_broker

            prepare_broker(self.settings)  # the data folder the broker file lives in may not exist yet
            declare_service_queues(self.settings, make_celery(self.settings))
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=REPO_ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b" ready." in self.log_path.read_bytes():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
            time.sleep(0.1)
        raise TimeoutError(f"worker not ready after {timeout} s:\n{self.tail()}")

    def tail(self, n: int = 4000) -> str:
        return self.log_path.read_bytes()[-n:].decode(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no ack, no final checkpoint."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "log", None):
            self.log.close()

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def server_with_worker(root: Path, **overrides: Any) -> Iterator[tuple[LiveServer, Worker]]:
    """A live API over local storage and the embedded broker, with one ready worker; both stopped after."""
    settings = make_settings(root, **{"worker_heartbeat_s": 1.0, **overrides})
    worker = Worker(settings, root / "worker.log").start()
    try:
        with LiveServer(settings) as srv:
            worker.wait_ready()
            yield srv, worker
    finally:
        worker.stop()


def cli_command() -> list[str]:
    """The `diggan` console script `pip install -e .` made, or the module where there is none."""
    script = Path(sys.executable).parent / "diggan"
    return [str(script)] if script.exists() else [sys.executable, "-m", "diggan"]


class Cli:
    """Runs the `diggan` command line against a live server, as a user's shell would."""

    def __init__(self, url: str, cwd: Path, api_key: str):
        self.env = {**os.environ, "DIGGAN_URL": url, "DIGGAN_API_KEY": api_key}
        self.cwd = cwd

    def __call__(self, *args: str, ok: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        proc = subprocess.run([*cli_command(), *args], capture_output=True, text=True, env=self.env, cwd=self.cwd,
                              timeout=timeout)
        if ok:
            assert proc.returncode == 0, f"diggan {' '.join(args)} -> {proc.returncode}\n{proc.stderr[-3000:]}"
        return proc

    def json(self, *args: str) -> object:
        return json.loads(self(*args).stdout)


def wait_for(fn: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def wait_job(client: httpx.Client, job_id: str, until: Callable[[dict], bool], timeout: float, worker: Worker | None = None) -> dict:
    def check() -> dict | None:
        job = client.get(f"/v1/jobs/{job_id}").json()
        return job if until(job) else None

    try:
        return wait_for(check, timeout, f"job {job_id}")
    except TimeoutError as e:
        raise TimeoutError(f"{e}\nworker log:\n{worker.tail() if worker else ''}") from None


def zip_folder(folder: Path, limit: int | None = None) -> bytes:
    buf = io.BytesIO()
    files = sorted(p for p in folder.iterdir() if p.is_file())[:limit]
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for p in files:
            zf.write(p, f"{folder.name}/{p.name}")
    return buf.getvalue()


def png_bytes(size: int = 40, color: tuple[int, int, int] = (200, 30, 30), seed: int = 0) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = (rng.random((size, size, 3)) * 60 + np.array(color) * 0.7).clip(0, 255).astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def images_zip(n: int, size: int = 40) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(n):
            zf.writestr(f"imgs/{i:03d}.png", png_bytes(size, seed=i))
    return buf.getvalue()


def store_keys(store) -> list[str]:
    return [o.key for o in store.list("")]


def upload_zip(client: httpx.Client, data: bytes, name: str = "test") -> httpx.Response:
    return client.post("/v1/datasets", files={"file": (f"{name}.zip", data, "application/zip")}, data={"name": name})


class ApiProcess:
    """`python -m service up --workers 0` in its own process (an API replica), on `settings`."""

    def __init__(self, settings: Settings, log_path: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [sys.executable, "-m", "service", "up", "--workers", "0", "--host", "127.0.0.1",
                    "--port", str(self.port), "--log-level", "warning"]
        self.env = settings_env(settings)
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> ApiProcess:
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=REPO_ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 60) -> ApiProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"API exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    self.client = httpx.Client(base_url=self.url, timeout=60)
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"API not ready after {timeout} s:\n{self.tail()}")

    def tail(self, n: int = 4000) -> str:
        return self.log_path.read_bytes()[-n:].decode(errors="replace")

    def stop(self, timeout: float = 30) -> None:
        if getattr(self, "client", None):
            self.client.close()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if getattr(self, "log", None):
            self.log.close()
