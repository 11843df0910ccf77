"""FastAPI dependencies: settings, storage, repos, the Celery app, and the tenant.

Everything is built once in create_app() and kept on app.state, so tests can build
apps with different settings side by side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request

from service.auth import DEFAULT_TENANT, AuthError, Principal, QuotaExceeded
from service.settings import Settings
from service.storage import ObjectStore

if TYPE_CHECKING:
    from celery import Celery

    from service.datasets import DatasetRepo
    from service.jobs import JobRepo
    from service.sampling import GeneratorCache



def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> ObjectStore:
    return request.app.state.store


def get_jobs(request: Request) -> "JobRepo":
    return request.app.state.jobs


def get_datasets(request: Request) -> "DatasetRepo":
    return request.app.state.datasets


def get_celery(request: Request) -> "Celery":
    return request.app.state.celery


def get_generators(request: Request) -> "GeneratorCache":
    return request.app.state.generators


def _presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return request.headers.get("x-api-key", "").strip() or None


def get_principal(request: Request) -> Principal:
    """Who is calling (tenant, key, quotas), after the rate limit. Cached per request by FastAPI."""
    state = request.app.state
    try:
        principal = state.keys.authenticate(_presented_key(request))
    except AuthError as e:
        raise HTTPException(401, str(e), headers={"WWW-Authenticate": "Bearer"}) from None
    q = principal.quotas
    if q is not None:
        try:
            state.rate_limiter.take(principal.key_id or principal.tenant, q.requests_per_s, q.burst)
        except QuotaExceeded as e:
            raise HTTPException(429, str(e), headers={"Retry-After": str(e.retry_after)}) from None
    request.state.principal = principal
    return principal


def get_tenant(principal: Annotated[Principal, Depends(get_principal)]) -> str:
    """'default' when auth is off; otherwise the tenant of the presented API key (see service/auth.py)."""
    return principal.tenant


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[ObjectStore, Depends(get_store)]
TenantDep = Annotated[str, Depends(get_tenant)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
JobsDep = Annotated["JobRepo", Depends(get_jobs)]
DatasetsDep = Annotated["DatasetRepo", Depends(get_datasets)]
CeleryDep = Annotated["Celery", Depends(get_celery)]
GeneratorsDep = Annotated["GeneratorCache", Depends(get_generators)]
