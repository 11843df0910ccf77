"""FastAPI dependencies: settings, storage, repos, the Celery app, and the tenant.

Everything is built once in create_app() and kept on app.state, so tests can build
apps with different settings side by side.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request

from service.settings import Settings
from service.storage import ObjectStore

if TYPE_CHECKING:
    from celery import Celery

    from service.datasets import DatasetRepo
    from service.jobs import JobRepo
    from service.sampling import GeneratorCache


DEFAULT_TENANT = "default"


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
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return request.headers.get("x-api-key") or None


def get_tenant(request: Request) -> str:
    """'default' when auth is off; otherwise the tenant of the presented API key.

    Placeholder for issue 6: keys come from settings as 'tenant:sha256hex' and are compared
    in constant time; a key store + CLI replaces this without touching any route.
    """
    settings: Settings = request.app.state.settings
    if not settings.auth_required:
        return DEFAULT_TENANT
    key = _presented_key(request)
    if key:
        digest = hashlib.sha256(key.encode()).hexdigest()
        for entry in settings.api_keys:
            tenant, _, expected = entry.partition(":")
            if expected and hmac.compare_digest(digest, expected.strip().lower()):
                return tenant
    raise HTTPException(401, "missing or invalid API key; send it as 'Authorization: Bearer <key>'",
                        headers={"WWW-Authenticate": "Bearer"})


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[ObjectStore, Depends(get_store)]
TenantDep = Annotated[str, Depends(get_tenant)]
JobsDep = Annotated["JobRepo", Depends(get_jobs)]
DatasetsDep = Annotated["DatasetRepo", Depends(get_datasets)]
CeleryDep = Annotated["Celery", Depends(get_celery)]
GeneratorsDep = Annotated["GeneratorCache", Depends(get_generators)]
