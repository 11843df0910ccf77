"""FastAPI dependencies: the shared core (settings, repositories, store), the Celery client, and the
caller (tenant, quotas) after authentication and the rate limit.

Everything is built once in create_app() and kept on app.state, so tests can build apps with
different settings side by side.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from service.core.apikeys import AuthError, Principal, key_id_of
from service.core.quotas import QuotaExceeded
from service.core.services import Core
from service.core.settings import Settings
from service.core.storage import ObjectStore

T = TypeVar("T")

if TYPE_CHECKING:
    from celery import Celery

    from service.api.sampling import GeneratorCache
    from service.core.jobs import JobRepo
    from service.core.samples import SampleSetRepo
    from service.core.uploads import DatasetRepo, ModelRepo


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_core(request: Request) -> Core:
    return request.app.state.core


def get_store(request: Request) -> ObjectStore:
    return request.app.state.core.store


def get_jobs(request: Request) -> JobRepo:
    return request.app.state.core.jobs


def get_datasets(request: Request) -> DatasetRepo:
    return request.app.state.core.datasets


def get_models(request: Request) -> ModelRepo:
    return request.app.state.core.models


def get_samples(request: Request) -> SampleSetRepo:
    return request.app.state.core.samples


def get_celery(request: Request) -> Celery:
    return request.app.state.celery


def get_generators(request: Request) -> GeneratorCache:
    return request.app.state.generators


async def in_upload_pool(request: Request, fn: Callable[..., T], *args: Any) -> T:
    """Run upload work (decoding images, converting model files) in the app's own small pool, not the
    shared thread pool every other request needs: a burst of uploads queues there instead of starving it."""
    pool = request.app.state.upload_pool
    return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(fn, *args))


def _presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return request.headers.get("x-api-key", "").strip() or None


async def get_principal(request: Request) -> Principal:
    """Who is calling (tenant, key, quotas), after the rate limit. Cached per request by FastAPI.

    Async on purpose: a cached key is checked on the event loop, and only a cache miss or a rate-limit
    count (a database or Redis round trip) goes to the thread pool, so a flood of requests with made-up
    keys cannot occupy the pool that every other request needs."""
    state = request.app.state
    keys, presented = state.core.keys, _presented_key(request)
    try:
        if not state.settings.auth_enabled or not presented:
            principal = keys.authenticate(presented)  # anonymous, or AuthError("missing API key ...")
        else:
            key_id = key_id_of(presented)
            hit, rec = keys.cached(key_id) if key_id else (True, None)  # static keys need no lookup
            principal = keys.verify(presented, rec) if hit else await run_in_threadpool(keys.authenticate, presented)
    except AuthError as e:
        raise HTTPException(401, str(e), headers={"WWW-Authenticate": "Bearer"}) from None
    q = principal.quotas
    if q is not None:
        try:
            await run_in_threadpool(state.rate_limiter.take, principal.key_id or principal.tenant, q.requests_per_s,
                                    q.burst)
        except QuotaExceeded as e:
            raise HTTPException(429, str(e), headers={"Retry-After": str(e.retry_after)}) from None
    request.state.principal = principal
    return principal


def heavy_slot(request: Request, principal: Annotated[Principal, Depends(get_principal)]) -> Iterator[None]:
    """Holds one of the tenant's heavy-request slots (shared by every replica) while the handler runs:
    sampling, interpolation, memorization and export each keep a CPU busy for seconds."""
    core, settings = request.app.state.core, request.app.state.settings
    with core.slots.hold(principal.tenant, "heavy", settings.max_heavy_requests_per_tenant):
        yield


def get_tenant(principal: Annotated[Principal, Depends(get_principal)]) -> str:
    """'default' when auth is off; otherwise the tenant of the presented API key."""
    return principal.tenant


SettingsDep = Annotated[Settings, Depends(get_settings)]
CoreDep = Annotated[Core, Depends(get_core)]
StoreDep = Annotated[ObjectStore, Depends(get_store)]
TenantDep = Annotated[str, Depends(get_tenant)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
JobsDep = Annotated["JobRepo", Depends(get_jobs)]
DatasetsDep = Annotated["DatasetRepo", Depends(get_datasets)]
ModelsDep = Annotated["ModelRepo", Depends(get_models)]
SamplesDep = Annotated["SampleSetRepo", Depends(get_samples)]
CeleryDep = Annotated["Celery", Depends(get_celery)]
GeneratorsDep = Annotated["GeneratorCache", Depends(get_generators)]
# scope="function": the slot is released when the handler returns, before the response is sent (the default,
# "request", releases it after the body has gone out, so a client's next request could find it still taken).
HeavySlot = Depends(heavy_slot, scope="function")
