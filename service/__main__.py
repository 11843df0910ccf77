"""`python -m service up`: the API (uvicorn) plus Celery worker subprocesses, one command.

    python -m service up --host 127.0.0.1 --port 8000 --data-dir data [--workers 1]
    python -m service keys create --tenant acme [--name ci] [--max-concurrent-jobs 2 ...]   # prints the key once
    python -m service keys list
    python -m service keys revoke KEY_ID
    python -m service db upgrade|current          # Alembic migrations (also applied at start-up)
    python -m service import-records [--dry-run]  # JSON records of version 0.1 -> the database

Keys are kept hashed in the database (DIGGAN_DATABASE_URL, or DIGGAN_DATA_DIR's SQLite file), so the
CLI must see the same settings as the API. They are checked when auth is on (DIGGAN_AUTH_REQUIRED=true).

With no DIGGAN_DATABASE_URL / DIGGAN_BROKER_URL / DIGGAN_STORAGE set this is the embedded mode: a
SQLite database, local-directory storage and a server-less SQLite broker under --data-dir. Ctrl-C
stops the API, then asks the workers to stop (a training job stores a final checkpoint and is
re-queued), then kills any that have not exited after --grace seconds.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from service.core.settings import Settings

log = logging.getLogger("service")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def worker_command(queue: str, name: str, pool: str = "solo", concurrency: int = 1, loglevel: str = "INFO") -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "worker.celery_app:app", "worker",
        "-Q", queue, "-P", pool, "-c", str(concurrency), "-n", f"{name}@%h", "-l", loglevel,
        "--without-gossip", "--without-mingle",
    ]


def spawn_workers(env: dict[str, str], n_train: int, loglevel: str = "INFO") -> list[subprocess.Popen]:
    # Training and light work in separate processes, so a light task never waits behind a long job.
    # DIGGAN_EXIT_WITH_PARENT: a worker whose parent died (even by SIGKILL) shuts itself down.
    env = {**env, "DIGGAN_EXIT_WITH_PARENT": str(os.getpid())}
    cmds = [worker_command("train", f"train{i}", "solo", 1, loglevel) for i in range(n_train)]
    cmds.append(worker_command("light", "light", "threads", 2, loglevel))
    # Own session: Ctrl-C reaches only this process, which then stops the workers in order.
    return [subprocess.Popen(c, env=env, start_new_session=True) for c in cmds]


def stop_workers(procs: list[subprocess.Popen], grace: float) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)  # warm shutdown: the job checkpoints and is re-queued
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("worker %d did not stop within %.0f s; killing it (its job resumes from its last checkpoint)",
                        p.pid, grace)
            p.kill()
            p.wait()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def up(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {"host": args.host, "port": args.port}  # Settings' keyword arguments
    if args.data_dir:
        overrides["data_dir"] = Path(args.data_dir)
    settings = Settings(**overrides)
    if not is_loopback(settings.host) and not settings.auth_enabled:
        print(
            f"refusing to listen on {settings.host}: with auth off the service may only bind a loopback address "
            "(127.0.0.1, ::1, localhost). Turn auth on (DIGGAN_AUTH_REQUIRED=true) and create a key "
            "(python -m service keys create --tenant NAME), or use --host 127.0.0.1.",
            file=sys.stderr,
        )
        return 2
    env = dict(os.environ)
    env.update({"DIGGAN_LOG_LEVEL": args.log_level.upper(),
                "DIGGAN_DATA_DIR": str(settings.data_dir), "DIGGAN_BROKER_URL": settings.broker_url,
                "DIGGAN_RESULT_BACKEND": settings.result_backend, "DIGGAN_STORAGE": settings.storage,
                "DIGGAN_DATABASE_URL": settings.database_url})
    import uvicorn

    from service.api.main import create_app
    from service.core.queue import check_broker, declare_service_queues, prepare_broker

    prepare_broker(settings)
    app = create_app(settings)  # migrates the database before any worker starts
    check_broker(app.state.celery)  # a broker that does not answer is an error now, not in every worker
    # The SQLite broker creates its tables and each queue's row on first use, guarded only within one process:
    # workers (and this API) starting together raced on them and one died. Create them here, first.
    declare_service_queues(settings, app.state.celery)
    if not settings.auth_enabled and app.state.core.keys.has_active_keys():
        log.warning("API keys exist but auth is off (DIGGAN_AUTH_REQUIRED is not set): every loopback client "
                    "is the 'default' tenant and keys are not checked")
    procs = spawn_workers(env, args.workers, args.log_level.upper()) if args.workers > 0 else []
    mode = "embedded" if settings.embedded_broker else settings.broker_url.split(":", 1)[0]
    print(f"diggan-service on http://{settings.host}:{settings.port} (docs at /docs); storage={settings.storage} "
          f"broker={mode} data={settings.data_dir}; {len(procs)} worker process(es)", flush=True)
    # uvicorn re-raises SIGTERM after its graceful shutdown; with the default handler the process
    # would die before `finally` stops the workers. Turn it into SystemExit instead.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        # log_config=None: uvicorn's loggers go through our set-up (text or JSON, with request ids).
        uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level, log_config=None)
    finally:
        stop_workers(procs, args.grace)
    return 0


def _settings(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with --data-dir over them when given."""
    overrides: dict[str, Any] = {"data_dir": Path(args.data_dir)} if args.data_dir else {}
    return Settings(**overrides)


def _core(args: argparse.Namespace):
    from service.core.services import open_core

    return open_core(_settings(args))


def keys_cmd(args: argparse.Namespace) -> int:
    import json

    ks = _core(args).keys
    if args.keys_command == "create":
        quotas = {"concurrent_jobs": args.max_concurrent_jobs, "total_kimg": args.max_total_kimg,
                  "storage_bytes": args.max_storage_bytes, "requests_per_s": args.rate, "burst": args.burst}
        try:
            rec, token = ks.create(args.tenant, args.name or "", quotas)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if args.json:
            print(json.dumps({**rec.public(), "key": token}))
        else:
            print(f"created {rec.id} for tenant {rec.tenant!r}; the key is shown only this once:", file=sys.stderr)
            print(token)
        return 0
    if args.keys_command == "list":
        recs = [r.public() for r in ks.list()]
        if args.json:
            print(json.dumps(recs))
        else:
            for r in recs:
                state = f"revoked {r['revoked_at']}" if r["revoked_at"] else "active"
                print(f"{r['id']}  tenant={r['tenant']}  name={r['name']!r}  created={r['created_at']}  {state}"
                      + (f"  quotas={json.dumps(r['quotas'])}" if r["quotas"] else ""))
        return 0
    if args.keys_command == "revoke":
        try:
            rec = ks.revoke(args.key_id)
        except KeyError as e:
            print(f"error: {e.args[0]}", file=sys.stderr)
            return 1
        print(f"revoked {rec.id} (tenant {rec.tenant!r}) at {rec.revoked_at}")
        return 0
    return 1


def db_cmd(args: argparse.Namespace) -> int:
    from service.core.db import Database, upgrade
    from service.core.db.migrate import current_revision, head_revision

    settings = _settings(args)
    settings.ensure_dirs()
    db = Database(settings.database_url)
    if args.db_command == "upgrade":
        upgrade(db)
    print(f"{db!r}: revision {current_revision(db)} (latest {head_revision(db)})")
    return 0


def import_cmd(args: argparse.Namespace) -> int:
    import json

    from service.core.importer import import_records

    core = _core(args)
    report = import_records(core.db, core.store, dry_run=args.dry_run)
    print(json.dumps({"dry_run": args.dry_run, **report}, indent=2))
    return 0


def _positive_int(v: str) -> int:
    n = int(v)
    if n < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return n


def _positive_float(v: str) -> float:
    x = float(v)
    if not x >= 0 or x == float("inf"):
        raise argparse.ArgumentTypeError("must be a finite number >= 0")
    return x


def _rate_burst(v: str) -> int:
    n = _positive_int(v)
    if n < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return n


def _rate(v: str) -> float:
    x = _positive_float(v)
    if x <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return x


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("up", help="start the API and worker(s)")
    p.add_argument("--host", default=os.environ.get("DIGGAN_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("DIGGAN_PORT", "8000")))
    p.add_argument("--data-dir", default=None, help="embedded storage + broker directory (DIGGAN_DATA_DIR)")
    p.add_argument("--workers", type=int, default=1, help="training worker processes (0: API only)")
    p.add_argument("--grace", type=float, default=60.0, help="seconds a worker gets to checkpoint on shutdown")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    k = sub.add_parser("keys", help="create, list and revoke API keys")
    k.add_argument("--data-dir", default=None, help="embedded storage directory (DIGGAN_DATA_DIR)")
    k.add_argument("--json", action="store_true", help="machine-readable output")
    ksub = k.add_subparsers(dest="keys_command", required=True)
    kc = ksub.add_parser("create", help="create a key for a tenant; prints it once")
    kc.add_argument("--tenant", required=True)
    kc.add_argument("--name", default="")
    kc.add_argument("--max-concurrent-jobs", type=_positive_int, default=None)
    kc.add_argument("--max-total-kimg", type=_positive_float, default=None)
    kc.add_argument("--max-storage-bytes", type=_positive_int, default=None)
    kc.add_argument("--rate", type=_rate, default=None, help="requests per second (token bucket refill)")
    kc.add_argument("--burst", type=_rate_burst, default=None, help="token bucket size")
    ksub.add_parser("list", help="list keys (never the secrets)")
    kr = ksub.add_parser("revoke", help="revoke a key by id")
    kr.add_argument("key_id")
    d = sub.add_parser("db", help="database schema: upgrade to the latest migration, or show the current one")
    d.add_argument("--data-dir", default=None, help="embedded data directory (DIGGAN_DATA_DIR)")
    d.add_argument("db_command", choices=["upgrade", "current"])
    im = sub.add_parser("import-records", help="import version 0.1's JSON records from the object store "
                                               "(idempotent; prints what it did)")
    im.add_argument("--data-dir", default=None, help="embedded data directory (DIGGAN_DATA_DIR)")
    im.add_argument("--dry-run", action="store_true", help="count what would be imported; change nothing")
    args = parser.parse_args(argv)
    if args.command == "keys":
        return keys_cmd(args)
    if args.command == "db":
        return db_cmd(args)
    if args.command == "import-records":
        return import_cmd(args)
    from service.core.logs import configure_logging

    configure_logging(Settings().log_format if args.command == "up" else "text", args.log_level.upper())
    if args.command == "up":
        return up(args)
    return 1


if __name__ == "__main__":
    sys.exit(main())
