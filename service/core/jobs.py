"""Jobs: records, the state machine, and what the API does to them.

States: queued -> running -> succeeded | failed; queued -> canceled; running -> cancelling -> canceled;
running -> queued (worker shutdown, or its lease went stale). Every transition is one conditional
UPDATE (`... WHERE status IN (...)`), so cancel, finish, fail and requeue cannot lose each other:
whichever commits first wins, and the loser's UPDATE matches no row. A worker's own writes are also
fenced by the job's attempt number (service/core/lease.py).
"""

from __future__ import annotations

import builtins
import logging
from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import case, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.core import object_keys
from service.core.blobs import release_prefix
from service.core.db.engine import Database
from service.core.db.models import Checkpoint, Dataset, IdempotencyKey, Job, Tick
from service.core.db.sql import conditional_update, rows_affected
from service.core.db.types import db_now, seconds_before_now
from service.core.ids import new_id
from service.core.quotas import Quotas, check_new_job, lock_tenant
from service.core.webhooks import emit_status

log = logging.getLogger(__name__)


class JobStatus(str, Enum):
    queued = "queued"
    running = "running"
    cancelling = "cancelling"
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"


TERMINAL_STATES = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.canceled})
ACTIVE_STATES = frozenset({JobStatus.queued, JobStatus.running, JobStatus.cancelling})
ACTIVE = tuple(s.value for s in ACTIVE_STATES)
LEASED = (JobStatus.running.value, JobStatus.cancelling.value)  # a worker holds the job


class Progress(BaseModel):
    kimg: float = 0.0
    total_kimg: float = 0.0
    fraction: float = 0.0
    eta_seconds: float | None = None


class CheckpointInfo(BaseModel):
    name: str
    kimg: float
    sha256: str
    size: int
    created_at: datetime
    metrics: dict[str, float] = Field(default_factory=dict)
    is_best: bool = False
    final: bool = False
    grid: str | None = None  # the grid image's name
    attempt: int = 0  # the worker lease that wrote it
    object_key: str = Field(default="", exclude=True)  # where its bytes are (never shown to clients)
    grid_key: str | None = Field(default=None, exclude=True)

    @classmethod
    def from_row(cls, c: Checkpoint) -> CheckpointInfo:
        return cls(name=c.name, kimg=c.kimg, sha256=c.sha256, size=c.size, created_at=c.created_at,
                   metrics=dict(c.metrics or {}), is_best=c.is_best, final=c.final, grid=c.grid, attempt=c.attempt,
                   object_key=c.object_key, grid_key=c.grid_key)


class JobRecord(BaseModel):
    id: str
    tenant: str
    dataset_id: str
    status: JobStatus = JobStatus.queued
    config: dict[str, Any]
    request: dict[str, Any] = Field(default_factory=dict)
    progress: Progress = Field(default_factory=Progress)
    charged_kimg: float = 0.0
    latest_tick: dict[str, Any] | None = None
    error: str | None = None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancel_requested_at: datetime | None = None
    heartbeat_at: datetime | None = None
    enqueued_at: datetime | None = None
    enqueue_count: int = 0
    worker_id: str | None = None
    attempt: int = 0
    device: str | None = None
    versions: dict[str, Any] = Field(default_factory=dict)
    dataset_sha256: str | None = None
    latest_checkpoint: str | None = None
    best_checkpoint: str | None = None
    resumes: list[dict[str, Any]] = Field(default_factory=list)
    init_from: dict[str, Any] | None = None
    idempotency_key_hash: str | None = None
    name: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    webhook: dict[str, Any] | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATES

    def checkpoint_name(self, ref: str) -> str | None:
        """`latest`, `best` (falls back to latest when no metric chose one) or a checkpoint name."""
        return {"latest": self.latest_checkpoint, "best": self.best_checkpoint or self.latest_checkpoint}.get(ref, ref)

    @classmethod
    def from_row(cls, j: Job) -> JobRecord:
        total = j.total_kimg or 0.0
        progress = Progress(kimg=j.kimg, total_kimg=total, fraction=min(1.0, j.kimg / total) if total > 0 else 0.0,
                            eta_seconds=j.eta_seconds)
        if j.status == JobStatus.succeeded.value:
            progress.fraction, progress.eta_seconds = 1.0, 0.0
        return cls(
            id=j.id, tenant=j.tenant, dataset_id=j.dataset_id, status=JobStatus(j.status), config=j.config,
            request=j.request or {}, progress=progress, charged_kimg=j.charged_kimg, latest_tick=j.latest_tick,
            error=j.error, created_at=j.created_at, updated_at=j.updated_at, started_at=j.started_at,
            finished_at=j.finished_at, cancel_requested_at=j.cancel_requested_at, heartbeat_at=j.heartbeat_at,
            enqueued_at=j.enqueued_at, enqueue_count=j.enqueue_count, worker_id=j.worker_id, attempt=j.attempt,
            device=j.device, versions=j.versions or {}, dataset_sha256=j.dataset_sha256,
            latest_checkpoint=j.latest_checkpoint, best_checkpoint=j.best_checkpoint, resumes=list(j.resumes or []),
            init_from=j.init_from, idempotency_key_hash=j.idempotency_key_hash, name=j.name,
            metadata=dict(j.meta or {}), webhook=j.webhook,
        )


class IdempotencyConflict(Exception):
    """The key was used with a different body (409)."""


class JobBusy(Exception):
    """Unfinished work of the job's own (projections) would outlive its deletion (409)."""

    def __init__(self, ids: list[str]):
        super().__init__(", ".join(ids))
        self.ids = ids


class DatasetMissing(Exception):
    """The job names a dataset the tenant does not have (404)."""


class JobRepo:
    def __init__(self, db: Database):
        self.db = db

    # ------------------------------------------------------------------ reads
    def find(self, tenant: str, job_id: str) -> JobRecord | None:
        with self.db.read() as s:
            row = s.scalar(select(Job).where(Job.id == job_id, Job.tenant == tenant))
            return JobRecord.from_row(row) if row is not None else None

    # In this class's later annotations `list` is this method: they write builtins.list.
    def list(self, tenant: str, status: JobStatus | None = None, limit: int = 20, cursor: str | None = None,
             name: str | None = None, metadata: dict[str, str] | None = None) -> tuple[list[JobRecord], str | None]:
        """Newest first (ids are time-sortable). `cursor` is the last id of the previous page; `name` and
        `metadata` (every key=value given) filter."""
        q = select(Job).where(Job.tenant == tenant)
        if status is not None:
            q = q.where(Job.status == status.value)
        if name is not None:
            q = q.where(Job.name == name)
        for key, value in (metadata or {}).items():
            q = q.where(Job.meta[key].as_string() == value)
        if cursor:
            q = q.where(Job.id < cursor)
        with self.db.read() as s:
            rows = list(s.scalars(q.order_by(Job.id.desc()).limit(limit + 1)))
        page = [JobRecord.from_row(r) for r in rows[:limit]]
        return page, (page[-1].id if len(rows) > limit else None)

    def checkpoints(self, job_id: str) -> builtins.list[CheckpointInfo]:
        with self.db.read() as s:
            rows = s.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.kimg,
                                                                                            Checkpoint.id))
            return [CheckpointInfo.from_row(c) for c in rows]

    def checkpoint(self, rec: JobRecord, ref: str) -> CheckpointInfo | None:
        name = rec.checkpoint_name(ref)
        if not name:
            return None
        with self.db.read() as s:
            row = s.scalar(select(Checkpoint).where(Checkpoint.job_id == rec.id, Checkpoint.name == name))
            return CheckpointInfo.from_row(row) if row is not None else None

    def ticks(self, job_id: str, after_tick: int = 0, limit: int | None = None) -> builtins.list[dict[str, Any]]:
        q = select(Tick.stats).where(Tick.job_id == job_id, Tick.tick > after_tick).order_by(Tick.tick)
        if limit:
            q = q.limit(limit)
        with self.db.read() as s:
            return [dict(t) for t in s.scalars(q)]

    def snapshots(self, job_id: str) -> builtins.list[dict[str, Any]]:
        return [{"kimg": c.kimg, "checkpoint": c.name, "grid": c.grid, "metrics": c.metrics, "is_best": c.is_best,
                 "final": c.final} for c in self.checkpoints(job_id)]

    def active_for_dataset(self, tenant: str, dataset_id: str) -> builtins.list[str]:
        with self.db.read() as s:
            return list(s.scalars(select(Job.id).where(Job.tenant == tenant, Job.dataset_id == dataset_id,
                                                       Job.status.in_(ACTIVE))))

    # ------------------------------------------------------------------ create
    def create(self, *, tenant: str, dataset_id: str, config: dict[str, Any], request: dict[str, Any],
               init_from: dict[str, Any] | None, charged_kimg: float, quotas: Quotas | None,
               idempotency: tuple[str, str] | None, idempotency_ttl_s: float, name: str | None = None,
               metadata: dict[str, str] | None = None,
               webhook: dict[str, Any] | None = None) -> tuple[JobRecord, bool]:
        """Insert a queued job; with `idempotency` = (key hash, body hash), at most one job per key and
        tenant (a unique row written in the same transaction). Returns (job, replayed).

        Raises IdempotencyConflict, DatasetMissing, QuotaExceeded."""
        for _ in range(3):  # a unique-key race: the loser re-reads the winner's job
            try:
                return self._create_once(tenant, dataset_id, config, request, init_from, charged_kimg, quotas,
                                         idempotency, idempotency_ttl_s, name, metadata, webhook)
            except IntegrityError:
                if idempotency is None:
                    raise
                log.info("idempotency key raced another request; replaying its job")
        raise RuntimeError("idempotency key kept conflicting")  # pragma: no cover - needs three lost races

    def _create_once(self, tenant: str, dataset_id: str, config: dict[str, Any], request: dict[str, Any],
                     init_from: dict[str, Any] | None, charged_kimg: float, quotas: Quotas | None,
                     idempotency: tuple[str, str] | None, ttl_s: float, name: str | None,
                     metadata: dict[str, str] | None, webhook: dict[str, Any] | None) -> tuple[JobRecord, bool]:
        with self.db.write() as s:
            lock_tenant(s, tenant)  # serialises with quota checks and dataset deletes of this tenant
            if idempotency is not None:
                prior = self._replay(s, tenant, idempotency, ttl_s)
                if prior is not None:
                    return prior, True
            ready = s.scalar(select(Dataset.id).where(Dataset.id == dataset_id, Dataset.tenant == tenant,
                                                      Dataset.status == "ready"))
            if ready is None:
                raise DatasetMissing(dataset_id)
            check_new_job(s, tenant, quotas, charged_kimg)
            job = Job(id=new_id("job"), tenant=tenant, dataset_id=dataset_id, status=JobStatus.queued.value,
                      config=config, request=request, init_from=init_from, total_kimg=float(config["kimg"]),
                      charged_kimg=charged_kimg, versions={}, resumes=[], enqueue_count=0, attempt=0, kimg=0.0,
                      idempotency_key_hash=idempotency[0] if idempotency else None, name=name,
                      meta=dict(metadata or {}), webhook=webhook)
            s.add(job)
            if idempotency is not None:
                s.add(IdempotencyKey(tenant=tenant, key_hash=idempotency[0], body_hash=idempotency[1], job_id=job.id))
            s.flush()
            s.refresh(job)  # server defaults (created_at from the database clock)
            emit_status(s, job.id)
            return JobRecord.from_row(job), False

    @staticmethod
    def _replay(s: Session, tenant: str, idempotency: tuple[str, str], ttl_s: float) -> JobRecord | None:
        key_hash, body_hash = idempotency
        row = s.get(IdempotencyKey, (tenant, key_hash))
        if row is None:
            return None
        expired = s.scalar(select(IdempotencyKey.created_at < seconds_before_now(ttl_s))
                           .where(IdempotencyKey.tenant == tenant, IdempotencyKey.key_hash == key_hash))
        job = s.get(Job, row.job_id)
        if expired or job is None:  # forgotten: the key may be used again
            s.delete(row)
            s.flush()
            return None
        if row.body_hash != body_hash:
            raise IdempotencyConflict(key_hash)
        return JobRecord.from_row(job)

    def mark_enqueued(self, job_id: str) -> bool:
        """The broker accepted a message for this queued job."""
        with self.db.write() as s:
            won = rows_affected(s, conditional_update(Job).where(Job.id == job_id, Job.status == JobStatus.queued.value)
                                .values(enqueued_at=db_now(), enqueue_count=Job.enqueue_count + 1))
            return won == 1

    # ------------------------------------------------------------------ transitions the API makes
    def cancel(self, tenant: str, job_id: str) -> JobRecord | None:
        """queued -> canceled; running -> cancelling (the worker stops at its next tick). A job in any
        other state is left alone; the caller looks at the returned record."""
        queued = Job.status == JobStatus.queued.value
        with self.db.write() as s:
            changed = rows_affected(s, conditional_update(Job).where(Job.id == job_id, Job.tenant == tenant,
                                        Job.status.in_((JobStatus.queued.value, JobStatus.running.value)))
                      .values(status=case((queued, JobStatus.canceled.value), else_=JobStatus.cancelling.value),
                              finished_at=case((queued, db_now()), else_=Job.finished_at),
                              cancel_requested_at=func.coalesce(Job.cancel_requested_at, db_now()),
                              worker_id=case((queued, None), else_=Job.worker_id),
                              updated_at=db_now()))
            if changed:
                emit_status(s, job_id)
            row = s.scalar(select(Job).where(Job.id == job_id, Job.tenant == tenant))
            return JobRecord.from_row(row) if row is not None else None

    def delete(self, tenant: str, job_id: str) -> bool:
        """Delete a finished job (its ticks, checkpoints, sample sets, latents and projections cascade) and queue
        its objects for removal; False when it is not finished (or not there). Its storage is credited at once.
        Raises JobBusy while one of its projections is unfinished (its worker would write after the delete)."""
        from service.core.db.models import Projection

        with self.db.write() as s:
            busy = list(s.scalars(select(Projection.id).where(Projection.job_id == job_id, Projection.tenant == tenant,
                                                              Projection.status.in_(("queued", "running")))))
            if busy:
                raise JobBusy(busy)
            if rows_affected(s, delete(Job).where(Job.id == job_id, Job.tenant == tenant,
                                                  Job.status.in_([st.value for st in TERMINAL_STATES]))) != 1:
                return False
            release_prefix(s, tenant, object_keys.job_prefix(tenant, job_id))
            return True
