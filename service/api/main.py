"""The FastAPI app: create_app(settings) builds one on the shared core (database, store, repositories),
with its own Celery client for enqueueing and its own sweeper thread.

`uvicorn service.api.main:app` builds it from the environment on first access.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api import metrics, request_ids
from service.api.guards import BodyLimit, LoopbackOnly
from service.api.routes import (
    catalog,
    datasets,
    docs,
    editing,
    export,
    health,
    interpolation,
    jobs,
    latents,
    projections,
    reports,
    samples,
    ui,
)
from service.api.routes import models as model_routes
from service.api.routes import webhooks as webhook_routes
from service.api.sampling import CheckpointUnreadable, GeneratorCache
from service.core.queue import enqueue_projection, enqueue_train, make_celery
from service.core.quotas import QuotaExceeded
from service.core.ratelimit import build_rate_limiter
from service.core.services import open_core
from service.core.settings import Settings, get_settings
from service.core.storage import InvalidKey, ObjectNotFound, StorageFull, StorageUnavailable
from service.core.sweep import sweep
from service.core.webhooks import deliver_due

log = logging.getLogger(__name__)

# Routes that stream their bodies to temporary files under their own limits (max_upload_bytes etc.).
UPLOAD_ROUTES = [("POST", "/v1/datasets"), ("POST", "/v1/models"), ("POST", "/v1/jobs/[^/]+/projections")]


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:10]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts) or "invalid request"


def _install_error_handlers(app: FastAPI) -> None:
    """Every error is {"detail": "<what is wrong and how to fix it>"} (plus `errors` for 422s)."""

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg")), "type": e.get("type")} for e in exc.errors()[:20]]
        return JSONResponse({"detail": _validation_message(exc), "errors": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = str(exc.detail)
        path = request.url.path[:200]
        if exc.status_code == 404 and detail == "Not Found":  # no route matched at all
            detail = f"no such resource {path!r}; the API's routes are listed at /docs"
        elif exc.status_code == 405 and detail == "Method Not Allowed":
            detail = f"method {request.method} is not allowed on {path!r}; see /docs for what is"
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(ObjectNotFound)
    async def _not_found(request: Request, exc: ObjectNotFound) -> JSONResponse:
        return JSONResponse({"detail": "not found"}, status_code=404)

    @app.exception_handler(InvalidKey)
    async def _bad_key(request: Request, exc: InvalidKey) -> JSONResponse:
        return JSONResponse({"detail": "not found"}, status_code=404)

    @app.exception_handler(StorageFull)
    async def _full(request: Request, exc: StorageFull) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=507)

    @app.exception_handler(CheckpointUnreadable)
    async def _bad_checkpoint(request: Request, exc: CheckpointUnreadable) -> JSONResponse:
        # A stored checkpoint that fails its checksum or does not load is never used (nor unpickled).
        return JSONResponse({"detail": f"the checkpoint could not be loaded ({exc}); use another one "
                                       "(GET /v1/jobs/{job_id}/checkpoints lists them)"}, status_code=409)

    @app.exception_handler(QuotaExceeded)
    async def _quota(request: Request, exc: QuotaExceeded) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=429, headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(StorageUnavailable)
    async def _unavailable(request: Request, exc: StorageUnavailable) -> JSONResponse:
        return JSONResponse({"detail": f"storage is unavailable; retry shortly ({exc})"}, status_code=503,
                            headers={"Retry-After": "5"})


class _Sweeper:
    """The sweep (service/core/sweep.py) on a daemon thread of the API process."""

    def __init__(self, app: FastAPI):
        self.app, self.stop = app, threading.Event()
        self.thread = threading.Thread(target=self._run, name="sweep", daemon=True)

    def _run(self) -> None:
        st = self.app.state
        while not self.stop.wait(st.settings.sweep_interval_s):
            try:
                sweep(st.core.db, st.settings, lambda t, j, g: enqueue_train(st.celery, t, j, g), st.core.store,
                      enqueue_projection=lambda t, p: enqueue_projection(st.celery, t, p))
            except Exception:
                log.exception("sweep failed; will retry")


class _WebhookDispatcher:
    """Delivers due webhook events (service/core/webhooks.py) from a daemon thread of the API process."""

    def __init__(self, app: FastAPI):
        self.app, self.stop = app, threading.Event()
        self.thread = threading.Thread(target=self._run, name="webhooks", daemon=True)

    def _run(self) -> None:
        import httpx

        st = self.app.state
        with httpx.Client(timeout=st.settings.webhook_timeout_s, follow_redirects=False) as client:
            while not self.stop.wait(st.settings.webhook_poll_s):
                try:
                    while deliver_due(st.core.db, st.settings, client) and not self.stop.is_set():
                        pass
                except Exception:
                    log.exception("webhook dispatch failed; will retry")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sweeper = _Sweeper(app) if settings.sweep_interval_s > 0 else None
        if sweeper:
            sweeper.thread.start()
        dispatcher = _WebhookDispatcher(app)
        dispatcher.thread.start()
        yield
        dispatcher.stop.set()
        if sweeper:
            sweeper.stop.set()
        app.state.upload_pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="diggan-service",
        version="0.2.0",
        description="Fine-tune StyleGAN2-ADA + DigGAN on ~100 images: upload a dataset, start a job, "
                    "follow its progress, download checkpoints and samples.",
        lifespan=lifespan,
        docs_url=None,  # served from local assets instead (routes/docs.py)
        redoc_url=None,
    )
    core = open_core(settings)
    app.state.settings = settings
    app.state.core = core
    app.state.celery = make_celery(settings)
    app.state.generators = GeneratorCache(core.store, settings.generator_cache_size, settings.sample_device,
                                          settings.sample_threads)
    app.state.rate_limiter = build_rate_limiter(core.db, settings.redis_url)
    app.state.upload_pool = ThreadPoolExecutor(settings.upload_workers, thread_name_prefix="upload")
    _install_error_handlers(app)
    for module in (health, datasets, jobs, samples, interpolation, export, reports, catalog, ui, model_routes,
                   webhook_routes, projections, latents, editing):
        app.include_router(module.router)
    ui.mount(app)  # the dashboard's static files under /ui/
    docs.mount(app)
    metrics.install(app)
    # Outermost last: the loopback rule answers before anything else looks at the request.
    request_ids.install(app)
    app.add_middleware(BodyLimit, limit=settings.max_json_body_bytes, exempt=UPLOAD_ROUTES)
    if not settings.auth_enabled:
        app.add_middleware(LoopbackOnly)
    return app


app: FastAPI  # declared only (no value): the first access goes through __getattr__ below


def __getattr__(name: str):
    # `uvicorn service.api.main:app` builds the app from the environment, on first access only.
    if name == "app":
        global app
        app = create_app()
        return app
    raise AttributeError(name)
