"""Per-tenant limits on work in progress, counted in the database so every API replica sees them:
heavy requests (sampling, interpolation, memorization, export), open event streams, and pixels being
decoded from uploads.

    with slots.hold(tenant, "heavy", limit=2):            # QuotaExceeded (429) when the tenant is at its limit
        ...
    slot = slots.acquire(tenant, "events", limit=16, ttl_s=120); slots.extend(slot, 120); slots.release(slot)

Acquiring is one transaction under the tenant's row lock: two replicas cannot both take the last slot.
A slot expires `ttl_s` after it was taken or last extended, so a crashed process frees its slots.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from service.core.db.engine import Database
from service.core.db.models import WorkSlot
from service.core.db.sql import conditional_update
from service.core.db.types import db_now, seconds_after_now
from service.core.ids import new_id
from service.core.quotas import QuotaExceeded, lock_tenant

WHAT = {"heavy": "heavy requests (sampling, interpolation, memorization, export) running",
        "events": "open event streams", "decode": "pixels being decoded from uploads"}


class Slots:
    def __init__(self, db: Database):
        self.db = db

    def acquire(self, tenant: str, kind: str, limit: int, ttl_s: float, weight: int = 1) -> str:
        with self.db.write() as s:
            lock_tenant(s, tenant)
            s.execute(delete(WorkSlot).where(WorkSlot.tenant == tenant, WorkSlot.expires_at < db_now()))
            used = _weight_in_use(s, tenant, kind)
            if used + weight > limit:
                raise QuotaExceeded(f"too many {WHAT.get(kind, kind)} for this tenant at once ({used:,} of "
                                    f"{limit:,} in use, this needs {weight:,}); wait for one to finish", 5)
            slot = new_id("slot")
            s.add(WorkSlot(id=slot, tenant=tenant, kind=kind, weight=weight, expires_at=seconds_after_now(ttl_s)))
            return slot

    def in_use(self, tenant: str, kind: str) -> int:
        """The weight of the tenant's slots of this kind, expired ones included until the next acquire."""
        with self.db.read() as s:
            return _weight_in_use(s, tenant, kind)

    def extend(self, slot: str, ttl_s: float) -> None:
        with self.db.write() as s:
            s.execute(conditional_update(WorkSlot).where(WorkSlot.id == slot)
                      .values(expires_at=seconds_after_now(ttl_s)))

    def release(self, slot: str) -> None:
        with self.db.write() as s:
            s.execute(delete(WorkSlot).where(WorkSlot.id == slot))

    @contextmanager
    def hold(self, tenant: str, kind: str, limit: int, ttl_s: float = 600.0, weight: int = 1) -> Iterator[str]:
        slot = self.acquire(tenant, kind, limit, ttl_s, weight)
        try:
            yield slot
        finally:
            self.release(slot)


def _weight_in_use(s: Session, tenant: str, kind: str) -> int:
    return int(s.scalar(select(func.coalesce(func.sum(WorkSlot.weight), 0))
                        .where(WorkSlot.tenant == tenant, WorkSlot.kind == kind)) or 0)
