"""Per-tenant quotas, counted in the database inside the transaction that spends them.

A check and the insert it guards are one transaction holding the tenant's row lock
(`lock_tenant`): two API replicas creating jobs for one tenant at once are serialised, so neither
can squeeze past a limit the other has just reached.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from service.core.db.models import Blob, Job, Tenant
from service.core.db.sql import insert_ignore
from service.core.settings import Settings

ACTIVE = ("queued", "running", "cancelling")
TERMINAL = ("succeeded", "failed", "canceled")


class QuotaExceeded(Exception):
    """429 with Retry-After."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


@dataclass(frozen=True)
class Quotas:
    concurrent_jobs: int
    total_kimg: float
    storage_bytes: int
    requests_per_s: float
    burst: int

    @classmethod
    def defaults(cls, s: Settings) -> Quotas:
        return cls(s.quota_concurrent_jobs, s.quota_total_kimg, s.quota_storage_bytes, s.quota_requests_per_s,
                   s.quota_burst)

    @classmethod
    def for_key(cls, s: Settings, overrides: dict[str, Any] | None) -> Quotas:
        base = asdict(cls.defaults(s))
        known = {f.name for f in fields(cls)}
        base.update({k: v for k, v in (overrides or {}).items() if k in known and v is not None})
        return cls(**base)


OVERRIDABLE = tuple(f.name for f in fields(Quotas))


def lock_tenant(session: Session, tenant: str) -> None:
    """Create the tenant's row if needed and lock it until the transaction ends (SQLite: the write
    transaction already holds the database's write lock)."""
    insert_ignore(session, Tenant, {"name": tenant}, ["name"])
    session.execute(select(Tenant.name).where(Tenant.name == tenant).with_for_update())


def storage_used(session: Session, tenant: str) -> int:
    return int(session.scalar(select(func.coalesce(func.sum(Blob.size), 0)).where(Blob.tenant == tenant)) or 0)


def active_jobs(session: Session, tenant: str) -> int:
    return int(session.scalar(select(func.count()).select_from(Job).where(Job.tenant == tenant,
                                                                          Job.status.in_(ACTIVE))) or 0)


def kimg_committed(session: Session, tenant: str) -> float:
    """Unfinished jobs count what they may still use; finished ones what they used."""
    used = case((Job.status.in_(TERMINAL),
                 Job.charged_kimg * func.coalesce(Job.kimg / func.nullif(Job.total_kimg, 0), 0)),
                else_=Job.charged_kimg)
    return float(session.scalar(select(func.coalesce(func.sum(used), 0.0)).where(Job.tenant == tenant)) or 0.0)


def check_storage(session: Session, tenant: str, quotas: Quotas | None, adding: int = 0) -> None:
    if quotas is None:
        return
    used = storage_used(session, tenant)
    if used + adding > quotas.storage_bytes:
        raise QuotaExceeded(
            f"storage quota exceeded: {used + adding:,} bytes would be stored, the limit is {quotas.storage_bytes:,}; "
            "delete datasets, jobs, sample sets or models you no longer need (DELETE /v1/...)", 3600)


def check_new_job(session: Session, tenant: str, quotas: Quotas | None, charged_kimg: float) -> None:
    """Concurrent jobs, total kimg and storage; call inside the transaction that inserts the job,
    after lock_tenant."""
    if quotas is None:
        return
    check_storage(session, tenant, quotas)  # checkpoints will add to it: refuse new jobs once it is full
    active = active_jobs(session, tenant)
    if active >= quotas.concurrent_jobs:
        raise QuotaExceeded(
            f"concurrent job quota reached: {active} unfinished job(s), the limit is {quotas.concurrent_jobs}; "
            "wait for one to finish or cancel one (POST /v1/jobs/{id}/cancel)", 30)
    committed = kimg_committed(session, tenant)
    if committed + charged_kimg > quotas.total_kimg:
        raise QuotaExceeded(
            f"training quota exceeded: this job costs {charged_kimg:g} kimg (training plus snapshot metrics), "
            f"{committed:g} of {quotas.total_kimg:g} kimg are used or committed by your jobs; ask for a smaller "
            "kimg, fewer metrics, or a higher quota", 3600)
