"""Projections (GAN inversion) as background work: records, the state machine, and the worker's fenced lease.

States: queued -> running -> succeeded | failed | canceled; queued -> canceled; running -> queued (the worker
shut down, or its heartbeat went stale: the sweep re-queues it, service/core/sweep.py). As for training jobs
(service/core/lease.py), a worker takes a projection with one conditional UPDATE that increments `attempt`,
and every later write of its is conditional on that attempt and on the row still being `running`: a worker
that lost its projection to another (a duplicate delivery, a takeover after a stale heartbeat) writes nothing.
Results go under the attempt's own keys, and each finished image (its latent, reconstruction and progress GIF)
is recorded in one fenced transaction, so a new attempt skips the images an earlier one finished.

A cancel sets `cancel_requested_at`; the worker sees it at its next heartbeat and ends `canceled`, keeping
the images it finished.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import and_, case, delete, func, or_, select
from sqlalchemy.orm import Session

from service.core import blobs, object_keys
from service.core import latents as latent_store
from service.core.db.engine import Database
from service.core.db.models import Projection
from service.core.db.sql import conditional_update, rows_affected
from service.core.db.types import db_now, seconds_before_now
from service.core.quotas import QuotaExceeded, Quotas, check_storage, lock_tenant
from service.core.storage import ObjectStore, StorageError

OWNER = "projection"  # blobs.owner_type


class ProjectionStatus(str, Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"


TERMINAL = ("succeeded", "failed", "canceled")
ACTIVE = ("queued", "running")


projection_prefix = object_keys.projection_prefix
target_key = object_keys.projection_target
result_key = object_keys.projection_result


class ProjectionRecord(BaseModel):
    id: str
    tenant: str
    job_id: str
    status: ProjectionStatus = ProjectionStatus.queued
    checkpoint: str
    checkpoint_key: str = Field(default="", exclude=True)
    checkpoint_sha256: str
    config: dict[str, Any]
    # Per image: index, filename, width, height, target_key; once projected: status "done", distance,
    # distance_name, pixel_mse, initial_distance, steps, latent_id, reconstruction_key, gif_key.
    images: list[dict[str, Any]]
    total_steps: int
    steps_done: int = 0
    distance: float | None = None
    eta_seconds: float | None = None
    error: str | None = None
    attempt: int = 0
    worker_id: str | None = None
    heartbeat_at: datetime | None = None
    enqueued_at: datetime | None = None
    enqueue_count: int = 0
    cancel_requested_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def terminal(self) -> bool:
        return self.status.value in TERMINAL

    @classmethod
    def from_row(cls, r: Projection) -> ProjectionRecord:
        return cls(id=r.id, tenant=r.tenant, job_id=r.job_id, status=ProjectionStatus(r.status), checkpoint=r.checkpoint,
                   checkpoint_key=r.checkpoint_key, checkpoint_sha256=r.checkpoint_sha256, config=dict(r.config),
                   images=[dict(i) for i in r.images], total_steps=r.total_steps, steps_done=r.steps_done,
                   distance=r.distance, eta_seconds=r.eta_seconds, error=r.error, attempt=r.attempt,
                   worker_id=r.worker_id, heartbeat_at=r.heartbeat_at, enqueued_at=r.enqueued_at,
                   enqueue_count=r.enqueue_count, cancel_requested_at=r.cancel_requested_at, created_at=r.created_at,
                   updated_at=r.updated_at, started_at=r.started_at, finished_at=r.finished_at)


def active_count(s: Session, tenant: str) -> int:
    return int(s.scalar(select(func.count()).select_from(Projection)
                        .where(Projection.tenant == tenant, Projection.status.in_(ACTIVE))) or 0)


def _check_limits(s: Session, tenant: str, max_active: int, quotas: Quotas | None, adding: int) -> None:
    active = active_count(s, tenant)
    if active >= max_active:
        raise QuotaExceeded(f"too many projections for this tenant at once ({active} queued or running, the limit is "
                            f"{max_active}); wait for one to finish or cancel one "
                            "(POST /v1/jobs/{job_id}/projections/{id}/cancel)", 30)
    check_storage(s, tenant, quotas, adding)


class ProjectionRepo:
    def __init__(self, db: Database):
        self.db = db

    # ------------------------------------------------------------------ create (the API)
    def create(self, store: ObjectStore, rec: ProjectionRecord, targets: list[bytes], quotas: Quotas | None,
               max_active: int) -> ProjectionRecord:
        """Store the prepared target PNGs, then insert the queued row with their blobs, checking the tenant's
        limit on unfinished projections and its storage quota under its row lock (429s). On any failure the
        stored targets are removed again."""
        sizes = sum(len(t) for t in targets)
        with self.db.read() as s:  # refuse before storing anything
            _check_limits(s, rec.tenant, max_active, quotas, sizes)
        prefix = projection_prefix(rec.tenant, rec.job_id, rec.id)
        try:
            for i, png in enumerate(targets):
                store.put_bytes(rec.images[i]["target_key"], png, "image/png")
            with self.db.write() as s:
                lock_tenant(s, rec.tenant)
                _check_limits(s, rec.tenant, max_active, quotas, sizes)
                row = Projection(id=rec.id, tenant=rec.tenant, job_id=rec.job_id, status=ProjectionStatus.queued.value,
                                 checkpoint=rec.checkpoint, checkpoint_key=rec.checkpoint_key,
                                 checkpoint_sha256=rec.checkpoint_sha256, config=rec.config, images=rec.images,
                                 total_steps=rec.total_steps, steps_done=0, attempt=0, enqueue_count=0)
                s.add(row)
                for i, png in enumerate(targets):
                    blobs.register(s, rec.tenant, rec.images[i]["target_key"], len(png), OWNER, rec.id)
                s.flush()
                s.refresh(row)
                return ProjectionRecord.from_row(row)
        except BaseException:
            try:
                store.delete_prefix(prefix)
            except StorageError:
                pass  # nothing registered: removed with the job
            raise

    def mark_enqueued(self, projection_id: str) -> bool:
        with self.db.write() as s:
            queued = Projection.status == ProjectionStatus.queued.value
            won = rows_affected(s, conditional_update(Projection).where(Projection.id == projection_id, queued)
                                .values(enqueued_at=db_now(), enqueue_count=Projection.enqueue_count + 1))
            return won == 1

    # ------------------------------------------------------------------ reads
    def find(self, tenant: str, job_id: str, projection_id: str) -> ProjectionRecord | None:
        with self.db.read() as s:
            row = s.scalar(select(Projection).where(Projection.id == projection_id, Projection.job_id == job_id,
                                                    Projection.tenant == tenant))
            return ProjectionRecord.from_row(row) if row is not None else None

    def list(self, tenant: str, job_id: str, limit: int = 20, cursor: str | None = None
             ) -> tuple[list[ProjectionRecord], str | None]:
        q = select(Projection).where(Projection.job_id == job_id, Projection.tenant == tenant)
        if cursor:
            q = q.where(Projection.id < cursor)
        with self.db.read() as s:
            rows = list(s.scalars(q.order_by(Projection.id.desc()).limit(limit + 1)))
        page = [ProjectionRecord.from_row(r) for r in rows[:limit]]
        return page, (page[-1].id if len(rows) > limit else None)

    # ------------------------------------------------------------------ what the API does to them
    def cancel(self, tenant: str, job_id: str, projection_id: str) -> ProjectionRecord | None:
        """queued -> canceled at once; running -> cancel requested (the worker ends it at its next heartbeat)."""
        queued = Projection.status == ProjectionStatus.queued.value
        with self.db.write() as s:
            s.execute(conditional_update(Projection)
                      .where(Projection.id == projection_id, Projection.job_id == job_id, Projection.tenant == tenant,
                             Projection.status.in_(ACTIVE))
                      .values(status=case((queued, ProjectionStatus.canceled.value), else_=Projection.status),
                              finished_at=case((queued, db_now()), else_=Projection.finished_at),
                              cancel_requested_at=func.coalesce(Projection.cancel_requested_at, db_now()),
                              updated_at=db_now()))
            row = s.scalar(select(Projection).where(Projection.id == projection_id, Projection.tenant == tenant))
            return ProjectionRecord.from_row(row) if row is not None else None

    def delete(self, tenant: str, job_id: str, projection_id: str) -> bool:
        """A finished projection's row and files (targets, reconstructions, GIFs) go; the latents it saved stay
        (they are latents of the job, deleted on their own or with the job). False while it is unfinished."""
        with self.db.write() as s:
            gone = rows_affected(s, delete(Projection).where(
                Projection.id == projection_id, Projection.job_id == job_id, Projection.tenant == tenant,
                Projection.status.in_(TERMINAL)))
            if gone != 1:
                return False
            blobs.release_prefix(s, tenant, projection_prefix(tenant, job_id, projection_id))
            return True


# ---------------------------------------------------------------------- the worker's side


class LeaseLost(Exception):
    """The projection moved on without this worker (taken over, canceled while queued, deleted): stop quietly."""


def claim(db: Database, tenant: str, projection_id: str, worker_id: str, stale_after_s: float,
          max_attempts: int) -> ProjectionRecord | None:
    """Take a queued projection (or a running one whose heartbeat is stale); None when there is nothing to take
    (finished, held by a live worker, gone): a duplicate delivery is then dropped."""
    takeover = and_(Projection.status == ProjectionStatus.running.value,
                    Projection.heartbeat_at < seconds_before_now(stale_after_s), Projection.attempt < max_attempts)
    with db.write() as s:
        got = s.execute(
            conditional_update(Projection)
            .where(Projection.id == projection_id, Projection.tenant == tenant,
                   or_(Projection.status == ProjectionStatus.queued.value, takeover))
            .values(status=ProjectionStatus.running.value, attempt=Projection.attempt + 1, worker_id=worker_id,
                    heartbeat_at=db_now(), started_at=func.coalesce(Projection.started_at, db_now()),
                    updated_at=db_now(), enqueued_at=None)
            .returning(Projection.attempt)
        ).first()
        if got is None:
            return None
        return ProjectionRecord.from_row(s.get_one(Projection, projection_id))


class ProjectionLease:
    """The writes of the worker holding attempt `attempt`. Each returns whether a cancel was requested, or
    raises LeaseLost."""

    def __init__(self, db: Database, rec: ProjectionRecord):
        self.db, self.tenant, self.job_id, self.id, self.attempt = db, rec.tenant, rec.job_id, rec.id, rec.attempt

    def _fence(self) -> Any:
        return and_(Projection.id == self.id, Projection.attempt == self.attempt,
                    Projection.status == ProjectionStatus.running.value)

    def _update(self, s: Session, **values: Any) -> bool:
        got = s.execute(conditional_update(Projection).where(self._fence())
                        .values(updated_at=db_now(), heartbeat_at=db_now(), **values)
                        .returning(Projection.cancel_requested_at)).first()
        if got is None:
            raise LeaseLost(f"projection {self.id} is no longer held by attempt {self.attempt}")
        return got[0] is not None

    def heartbeat(self) -> bool:
        with self.db.write() as s:
            return self._update(s)

    def progress(self, steps_done: int, distance: float | None, eta_seconds: float | None) -> bool:
        with self.db.write() as s:
            return self._update(s, steps_done=steps_done, distance=distance, eta_seconds=eta_seconds)

    def record_image(self, index: int, result: dict[str, Any], latent: latent_store.LatentRecord,
                     stored: list[tuple[str, int]], steps_done: int) -> bool:
        """One finished image: its result in the row, its latent saved, its files charged; one transaction."""
        with self.db.write() as s:
            images = s.scalar(select(Projection.images).where(self._fence()).with_for_update())
            if images is None:
                raise LeaseLost(f"projection {self.id} is no longer held by attempt {self.attempt}")
            images = [dict(i) for i in images]
            images[index].update(result, status="done", latent_id=latent.id)
            cancel = self._update(s, images=images, steps_done=steps_done, distance=result.get("distance"))
            latent_store.insert(s, latent)
            for key, size in stored:
                blobs.register(s, self.tenant, key, size, OWNER, self.id)
            return cancel

    def finish(self, status: ProjectionStatus, error: str | None = None) -> None:
        values: dict[str, Any] = {"status": status.value, "error": error, "finished_at": db_now()}
        if status == ProjectionStatus.succeeded:
            values.update(steps_done=Projection.total_steps, eta_seconds=0.0)
        with self.db.write() as s:
            self._update(s, **values)

    def requeue(self) -> None:
        """Hand it back (worker shutdown): queued again, to be sent again; or canceled if that was asked."""
        cancelled = Projection.cancel_requested_at.is_not(None)
        with self.db.write() as s:
            self._update(s, status=case((cancelled, ProjectionStatus.canceled.value), else_=ProjectionStatus.queued.value),
                         worker_id=None, enqueued_at=None,
                         finished_at=case((cancelled, db_now()), else_=None))
