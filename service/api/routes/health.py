"""Liveness and readiness. /readyz really touches the database, storage and the broker."""

from __future__ import annotations

import logging

import anyio
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from service.core.queue import check_broker

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database, storage and broker are reachable (503 otherwise)",
            responses={503: {"description": "a dependency is down"}})
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    checks: dict[str, str] = {}
    for name, fn in (("database", state.core.db.ping), ("storage", state.core.store.ping),
                     ("broker", lambda: check_broker(state.celery))):
        try:
            with anyio.fail_after(5):
                await run_in_threadpool(fn)
            checks[name] = "ok"
        except TimeoutError:
            checks[name] = "timed out"
            log.warning("readyz: %s did not answer within 5 s", name)
        except Exception as e:  # not ready: say which dependency, never its internal error text (logged instead)
            checks[name] = "unavailable"
            log.warning("readyz: %s is unavailable: %s: %s", name, type(e).__name__, e)
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)
