"""Datasets and models: resources a tenant uploads, with one lifecycle.

    rec = repo.reserve(tenant, fields, objects=[(key, size), ...], quotas)  # row "uploading", storage charged
    ... put the objects ...
    repo.publish(rec)        # "ready": visible to the API from now on
    repo.abort(rec, store)   # on any failure: row, charge and objects go

The reservation checks the storage quota and charges it in one transaction under the tenant's lock,
so concurrent uploads cannot overshoot it together. A process that dies between reserve and publish
leaves an "uploading" row that the sweep removes, with its objects, later.
"""

from __future__ import annotations

import builtins
import logging
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field
from sqlalchemy import delete, select

from service.core import blobs, object_keys
from service.core.db.engine import Database
from service.core.db.models import Dataset, Job, Model
from service.core.db.sql import conditional_update, rows_affected
from service.core.jobs import ACTIVE
from service.core.quotas import Quotas, check_storage, lock_tenant
from service.core.storage import ObjectStore, StorageError

log = logging.getLogger(__name__)

class DatasetRecord(BaseModel):
    id: str
    tenant: str
    name: str
    num_images: int
    resolution: int
    warnings: list[str] = Field(default_factory=list)
    created_at: datetime | None = None
    size_bytes: int = 0
    original_bytes: int = 0
    source: str = "zip"  # "zip" | "files"
    num_classes: int = 0  # > 0 when uploaded with class_folders: labels for class-conditional jobs (biggan)
    class_names: list[str] = Field(default_factory=list)  # label k = class_names[k] (sorted folder names)
    status: str = "uploading"


class ModelRecord(BaseModel):
    id: str
    tenant: str
    name: str
    kind: str  # "nvlabs-pkl" | "checkpoint": what was uploaded
    resolution: int
    network: dict[str, Any]  # gan_core NetworkConfig as a dict; jobs started from this model use it
    has_discriminator: bool = True
    notes: list[str] = Field(default_factory=list)  # settings of the upload that are ignored
    sha256: str  # of the stored weights (our checkpoint format), verified when a worker loads them
    size_bytes: int = 0
    original_bytes: int = 0
    original_sha256: str = ""
    created_at: datetime | None = None
    status: str = "uploading"


R = TypeVar("R", DatasetRecord, ModelRecord)


class InUse(Exception):
    """A dataset that unfinished jobs still train on (409)."""

    def __init__(self, job_ids: list[str]):
        super().__init__(", ".join(job_ids))
        self.job_ids = job_ids


class _UploadRepo(Generic[R]):
    table: Any
    record: type[R]
    owner_type: str

    def __init__(self, db: Database):
        self.db = db

    def prefix(self, tenant: str, ident: str) -> str:
        raise NotImplementedError

    def _view(self, row: Any) -> R:
        return self.record.model_validate({c.key: getattr(row, c.key) for c in self.table.__table__.columns})

    def find(self, tenant: str, ident: str) -> R | None:
        """A published (ready) one, or None."""
        with self.db.read() as s:
            row = s.scalar(select(self.table).where(self.table.id == ident, self.table.tenant == tenant,
                                                    self.table.status == "ready"))
            return self._view(row) if row is not None else None

    # In this class's later annotations `list` is this method: they write builtins.list.
    def list(self, tenant: str, limit: int = 100, cursor: str | None = None) -> tuple[list[R], str | None]:
        """Newest first; `cursor` is the last id of the previous page."""
        q = select(self.table).where(self.table.tenant == tenant, self.table.status == "ready")
        if cursor:
            q = q.where(self.table.id < cursor)
        with self.db.read() as s:
            rows = list(s.scalars(q.order_by(self.table.id.desc()).limit(limit + 1)))
        page = [self._view(r) for r in rows[:limit]]
        return page, (page[-1].id if len(rows) > limit else None)

    def reserve(self, rec: R, objects: builtins.list[tuple[str, int]], quotas: Quotas | None) -> R:
        """Insert the row as `uploading` and charge its objects' sizes (QuotaExceeded when they do not fit)."""
        with self.db.write() as s:
            lock_tenant(s, rec.tenant)
            check_storage(s, rec.tenant, quotas, sum(size for _, size in objects))
            fields = rec.model_dump(exclude={"created_at"})
            fields["status"] = "uploading"
            row = self.table(**fields)
            s.add(row)
            for key, size in objects:
                blobs.register(s, rec.tenant, key, size, self.owner_type, rec.id)
            s.flush()
            s.refresh(row)
            return self._view(row)

    def create(self, rec: R, files: builtins.list[tuple[str, Path, str]], store: ObjectStore,
               quotas: Quotas | None) -> R:
        """reserve -> put `files` (key, local path, content type) -> publish; on any failure, abort."""
        rec = self.reserve(rec, [(key, path.stat().st_size) for key, path, _ in files], quotas)
        try:
            for key, path, content_type in files:
                store.put_file(key, path, content_type)
            return self.publish(rec)
        except BaseException:
            log.exception("storing %s %s failed; removing what was written", self.owner_type, rec.id)
            self.abort(rec, store)
            raise

    def publish(self, rec: R) -> R:
        with self.db.write() as s:
            s.execute(conditional_update(self.table).where(self.table.id == rec.id, self.table.status == "uploading")
                      .values(status="ready"))
            return self._view(s.get(self.table, rec.id))

    def abort(self, rec: R, store: ObjectStore) -> None:
        """Undo a reservation: the row, the storage charge and whatever objects were written."""
        with self.db.write() as s:
            s.execute(delete(self.table).where(self.table.id == rec.id, self.table.status == "uploading"))
            blobs.release_prefix(s, rec.tenant, self.prefix(rec.tenant, rec.id))
        try:
            blobs.purge_deleted(self.db, store)
        except StorageError:
            pass  # the sweep finishes it

    def _delete_row(self, s: Any, tenant: str, ident: str) -> bool:
        if rows_affected(s, delete(self.table).where(self.table.id == ident, self.table.tenant == tenant,
                                                     self.table.status == "ready")) != 1:
            return False
        blobs.release_prefix(s, tenant, self.prefix(tenant, ident))
        return True

    def delete(self, tenant: str, ident: str) -> bool:
        """Delete the row and queue its objects for removal; its storage is credited at once."""
        with self.db.write() as s:
            return self._delete_row(s, tenant, ident)


class DatasetRepo(_UploadRepo[DatasetRecord]):
    table, record, owner_type = Dataset, DatasetRecord, "dataset"

    def prefix(self, tenant: str, ident: str) -> str:
        return object_keys.dataset_prefix(tenant, ident)

    def delete(self, tenant: str, ident: str) -> bool:
        """Raises InUse while unfinished jobs train on it (checked in the deleting transaction)."""
        with self.db.write() as s:
            lock_tenant(s, tenant)  # a job being created on it waits, or this waits for it
            users = list(s.scalars(select(Job.id).where(Job.tenant == tenant, Job.dataset_id == ident,
                                                        Job.status.in_(ACTIVE))))
            if users:
                raise InUse(users)
            return self._delete_row(s, tenant, ident)


class ModelRepo(_UploadRepo[ModelRecord]):
    table, record, owner_type = Model, ModelRecord, "model"

    def prefix(self, tenant: str, ident: str) -> str:
        return object_keys.model_prefix(tenant, ident)

    def delete(self, tenant: str, ident: str) -> bool:
        """Raises InUse while an unfinished job still has to load it (its start is pending)."""
        with self.db.write() as s:
            lock_tenant(s, tenant)
            rows = s.execute(select(Job.id, Job.init_from).where(Job.tenant == tenant, Job.status.in_(ACTIVE))).all()
            users = [r.id for r in rows if (r.init_from or {}).get("model") == ident]
            if users:
                raise InUse(users)
            return self._delete_row(s, tenant, ident)
