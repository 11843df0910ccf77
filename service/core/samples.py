"""Stored sample sets (POST /v1/jobs/{id}/samples with format=json): a row, and PNGs in the store."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import delete, select

from service.core import blobs, object_keys
from service.core.db.engine import Database
from service.core.db.models import SampleSet
from service.core.db.sql import conditional_update, rows_affected
from service.core.quotas import Quotas, check_storage, lock_tenant
from service.core.storage import ObjectStore, StorageError


class SampleSetRecord(BaseModel):
    id: str
    tenant: str
    job_id: str
    checkpoint: str
    psi: float
    class_index: int | None = None
    seeds: list[int]
    object_prefix: str
    created_at: datetime | None = None

    def image_key(self, index: int) -> str:
        return f"{self.object_prefix}{index:04d}.png"


def _view(row: SampleSet) -> SampleSetRecord:
    return SampleSetRecord(id=row.id, tenant=row.tenant, job_id=row.job_id, checkpoint=row.checkpoint, psi=row.psi,
                           class_index=row.class_index, seeds=list(row.seeds), object_prefix=row.object_prefix,
                           created_at=row.created_at)


class SampleSetRepo:
    def __init__(self, db: Database):
        self.db = db

    def reserve(self, rec: SampleSetRecord, sizes: list[int], quotas: Quotas | None) -> SampleSetRecord:
        with self.db.write() as s:
            lock_tenant(s, rec.tenant)
            check_storage(s, rec.tenant, quotas, sum(sizes))
            row = SampleSet(**rec.model_dump(exclude={"created_at"}), status="uploading")
            s.add(row)
            for i, size in enumerate(sizes):
                blobs.register(s, rec.tenant, rec.image_key(i), size, "sample_set", rec.id)
            s.flush()
            s.refresh(row)
            return _view(row)

    def publish(self, rec: SampleSetRecord) -> None:
        with self.db.write() as s:
            s.execute(conditional_update(SampleSet).where(SampleSet.id == rec.id).values(status="ready"))

    def abort(self, rec: SampleSetRecord, store: ObjectStore) -> None:
        with self.db.write() as s:
            s.execute(delete(SampleSet).where(SampleSet.id == rec.id))
            blobs.release_prefix(s, rec.tenant, rec.object_prefix)
        try:
            blobs.purge_deleted(self.db, store)
        except StorageError:
            pass

    def find(self, tenant: str, job_id: str, sample_id: str) -> SampleSetRecord | None:
        with self.db.read() as s:
            row = s.scalar(select(SampleSet).where(SampleSet.id == sample_id, SampleSet.job_id == job_id,
                                                   SampleSet.tenant == tenant, SampleSet.status == "ready"))
            return _view(row) if row is not None else None

    def list(self, tenant: str, job_id: str, limit: int = 100, cursor: str | None = None
             ) -> tuple[list[SampleSetRecord], str | None]:
        q = select(SampleSet).where(SampleSet.job_id == job_id, SampleSet.tenant == tenant, SampleSet.status == "ready")
        if cursor:
            q = q.where(SampleSet.id < cursor)
        with self.db.read() as s:
            rows = list(s.scalars(q.order_by(SampleSet.id.desc()).limit(limit + 1)))
        page = [_view(r) for r in rows[:limit]]
        return page, (page[-1].id if len(rows) > limit else None)

    def delete(self, tenant: str, job_id: str, sample_id: str) -> bool:
        with self.db.write() as s:
            if rows_affected(s, delete(SampleSet).where(SampleSet.id == sample_id, SampleSet.job_id == job_id,
                                                        SampleSet.tenant == tenant, SampleSet.status == "ready")) != 1:
                return False
            blobs.release_prefix(s, tenant, object_keys.job_sample_prefix(tenant, job_id, sample_id))
            return True
