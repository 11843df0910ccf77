"""Saved W / W+ latents of a job's generator: a row (what it is, where it came from) and a float32 .npy in the
store, charged to the tenant's storage and deleted with its job.

    rec = repo.save(store, LatentRecord(...), npy_bytes, quotas)   # object first, then row + blob in one transaction
    w = repo.load(store, rec)                                      # numpy [1, w_dim] or [1, num_ws, w_dim]

Saving writes the object before the row: a crash in between leaves an unregistered .npy under the job's
prefix, removed with the job (the row is the record; a reader never finds an object without one).
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service.core import blobs, object_keys
from service.core.db.engine import Database
from service.core.db.models import Latent
from service.core.db.sql import rows_affected
from service.core.quotas import Quotas, check_storage, lock_tenant
from service.core.storage import ObjectStore, StorageError

OWNER = "latent"  # blobs.owner_type


latent_prefix = object_keys.latent_prefix
latent_key = object_keys.latent_npy


class LatentRecord(BaseModel):
    id: str
    tenant: str
    job_id: str
    name: str | None = None
    kind: str  # "w": one w for every layer, [1, w_dim]; "w+": one per layer, [1, num_ws, w_dim]
    shape: list[int]
    source: dict[str, Any] = Field(default_factory=dict)
    checkpoint: str
    checkpoint_sha256: str
    object_key: str = ""
    size: int = 0
    created_at: datetime | None = None


def npy_bytes(w: np.ndarray) -> bytes:
    """A latent as float32 .npy with its batch dimension ([1, w_dim] or [1, num_ws, w_dim])."""
    arr = np.asarray(w, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None]
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def kind_of(shape: list[int] | tuple[int, ...]) -> str:
    return "w+" if len(shape) == 3 else "w"


def _view(row: Latent) -> LatentRecord:
    return LatentRecord(id=row.id, tenant=row.tenant, job_id=row.job_id, name=row.name, kind=row.kind,
                        shape=list(row.shape), source=dict(row.source or {}), checkpoint=row.checkpoint,
                        checkpoint_sha256=row.checkpoint_sha256, object_key=row.object_key, size=row.size,
                        created_at=row.created_at)


def insert(s: Session, rec: LatentRecord) -> None:
    """The row and its blob, in the caller's transaction (the .npy is already stored at rec.object_key)."""
    s.add(Latent(id=rec.id, tenant=rec.tenant, job_id=rec.job_id, name=rec.name, kind=rec.kind, shape=rec.shape,
                 source=rec.source, checkpoint=rec.checkpoint, checkpoint_sha256=rec.checkpoint_sha256,
                 object_key=rec.object_key, size=rec.size))
    blobs.register(s, rec.tenant, rec.object_key, rec.size, OWNER, rec.id)


class LatentRepo:
    def __init__(self, db: Database):
        self.db = db

    def save(self, store: ObjectStore, rec: LatentRecord, data: bytes, quotas: Quotas | None) -> LatentRecord:
        """Store the .npy and record it; QuotaExceeded (nothing kept) when the tenant's storage is full."""
        rec = rec.model_copy(update={"object_key": latent_key(rec.tenant, rec.job_id, rec.id), "size": len(data)})
        with self.db.read() as s:  # refuse before writing anything when already full
            check_storage(s, rec.tenant, quotas, len(data))
        store.put_bytes(rec.object_key, data, "application/octet-stream")
        try:
            with self.db.write() as s:
                lock_tenant(s, rec.tenant)
                check_storage(s, rec.tenant, quotas, len(data))  # again, under the lock: concurrent saves
                insert(s, rec)
                s.flush()
                row = s.get_one(Latent, rec.id)
                s.refresh(row)
                return _view(row)
        except BaseException:
            try:
                store.delete(rec.object_key)
            except StorageError:
                pass  # removed with the job
            raise

    def find(self, tenant: str, job_id: str, latent_id: str) -> LatentRecord | None:
        with self.db.read() as s:
            row = s.scalar(select(Latent).where(Latent.id == latent_id, Latent.job_id == job_id,
                                                Latent.tenant == tenant))
            return _view(row) if row is not None else None

    def list(self, tenant: str, job_id: str, limit: int = 100, cursor: str | None = None
             ) -> tuple[list[LatentRecord], str | None]:
        """Newest first (ids are time-sortable); `cursor` is the last id of the previous page."""
        q = select(Latent).where(Latent.job_id == job_id, Latent.tenant == tenant)
        if cursor:
            q = q.where(Latent.id < cursor)
        with self.db.read() as s:
            rows = list(s.scalars(q.order_by(Latent.id.desc()).limit(limit + 1)))
        page = [_view(r) for r in rows[:limit]]
        return page, (page[-1].id if len(rows) > limit else None)

    def delete(self, tenant: str, job_id: str, latent_id: str) -> bool:
        """The row goes and its object is queued for removal; storage is credited at once."""
        with self.db.write() as s:
            if rows_affected(s, delete(Latent).where(Latent.id == latent_id, Latent.job_id == job_id,
                                                     Latent.tenant == tenant)) != 1:
                return False
            blobs.release_prefix(s, tenant, latent_prefix(tenant, job_id, latent_id))
            return True

    @staticmethod
    def load(store: ObjectStore, rec: LatentRecord) -> np.ndarray:
        """The stored values, float32, exactly as saved (never unpickled)."""
        arr = np.load(io.BytesIO(store.get_bytes(rec.object_key)), allow_pickle=False)
        return np.asarray(arr, dtype=np.float32)
