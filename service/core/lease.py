"""A worker's lease on a job, with its attempt number as the fencing token.

`claim` takes a queued job (or a running one whose heartbeat is stale on the DATABASE's clock) in one
conditional UPDATE that increments `attempt`. Every later write the worker makes is conditional on
that attempt and on the job still being leased (running or cancelling): once the sweep or another
worker has moved the job on, the write matches no row and the worker gets LeaseLost, before it can
register anything. Its checkpoint bytes go under its own attempt's keys (service/core/object_keys.py),
so they can never replace bytes the live worker registered.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

from sqlalchemy import and_, case, delete, func, or_, select
from sqlalchemy.orm import Session

from service.core import blobs
from service.core.db.engine import Database
from service.core.db.models import Checkpoint, Job, Tick
from service.core.db.sql import conditional_update, insert_for
from service.core.db.types import db_now, seconds_before_now
from service.core.jobs import LEASED, CheckpointInfo, JobRecord, JobStatus
from service.core.webhooks import emit, emit_status


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class LeaseLost(Exception):
    """The job moved on without this worker (taken over, or ended): stop without writing."""


def claim(db: Database, tenant: str, job_id: str, worker_id: str, device: str, stale_after_s: float,
          max_attempts: int) -> JobRecord | None:
    """Take the job; None when it is not queued, or held by a worker whose heartbeat is fresh."""
    takeover = and_(Job.status == JobStatus.running.value, Job.heartbeat_at < seconds_before_now(stale_after_s),
                    Job.attempt < max_attempts)
    with db.write() as s:
        row = s.execute(
            conditional_update(Job)
            .where(Job.id == job_id, Job.tenant == tenant, or_(Job.status == JobStatus.queued.value, takeover))
            .values(status=JobStatus.running.value, attempt=Job.attempt + 1, worker_id=worker_id,
                    heartbeat_at=db_now(), started_at=func.coalesce(Job.started_at, db_now()), device=device,
                    updated_at=db_now(), enqueued_at=None)
            .returning(Job.attempt)
        ).first()
        if row is None:
            return None
        emit_status(s, job_id)
        return JobRecord.from_row(s.get_one(Job, job_id))


class JobLease:
    """The writes of the worker holding attempt `attempt` of a job. Each returns the job's status
    (so a worker learns of a cancel from its own tick) or raises LeaseLost."""

    def __init__(self, db: Database, rec: JobRecord):
        self.db, self.tenant, self.job_id, self.attempt = db, rec.tenant, rec.id, rec.attempt

    def _fence(self) -> Any:
        return and_(Job.id == self.job_id, Job.attempt == self.attempt, Job.status.in_(LEASED))

    def _update(self, s: Session, **values: Any) -> str:
        status = s.execute(conditional_update(Job).where(self._fence()).values(updated_at=db_now(), **values)
                           .returning(Job.status)).scalar()
        if status is None:
            raise LeaseLost(self._why(s))
        return status

    def _why(self, s: Session) -> str:
        row = s.execute(select(Job.status, Job.attempt).where(Job.id == self.job_id)).first()
        if row is None:
            return f"job {self.job_id} no longer exists"
        if row.attempt != self.attempt:
            return f"job {self.job_id} was taken over (attempt {row.attempt}, this worker held {self.attempt})"
        return f"job {self.job_id} is {row.status} now"

    def heartbeat(self) -> str:
        with self.db.write() as s:
            return self._update(s, heartbeat_at=db_now())

    def record_tick(self, stats: dict[str, Any], kimg: float, total_kimg: float, eta_seconds: float | None) -> str:
        """Progress on the job row and the tick appended, in one fenced transaction. A tick sent twice (a
        retry after a storage blip) replaces itself."""
        tick = int(stats.get("tick") or 0)
        with self.db.write() as s:
            status = self._update(s, latest_tick=stats, kimg=kimg, total_kimg=total_kimg, eta_seconds=eta_seconds,
                                  heartbeat_at=db_now())
            stmt = insert_for(s, Tick).values(job_id=self.job_id, tick=tick, attempt=self.attempt, kimg=kimg,
                                              stats=stats)
            s.execute(stmt.on_conflict_do_update(index_elements=["job_id", "tick"],
                                                 set_={"attempt": self.attempt, "kimg": kimg, "stats": stats}))
            return status

    def register_checkpoint(self, info: CheckpointInfo, stored: list[tuple[str, int]]) -> str:
        """Point `latest` (and `best`) at a checkpoint whose objects are already stored; `stored` lists
        (key, size) of those objects, charged to the tenant's storage."""
        with self.db.write() as s:
            values: dict[str, Any] = {"latest_checkpoint": info.name, "heartbeat_at": db_now()}
            if info.is_best:
                values["best_checkpoint"] = info.name
            status = self._update(s, **values)
            s.execute(delete(Checkpoint).where(Checkpoint.job_id == self.job_id, Checkpoint.name == info.name))
            s.add(Checkpoint(job_id=self.job_id, name=info.name, attempt=self.attempt, object_key=info.object_key,
                             grid_key=info.grid_key, grid=info.grid, kimg=info.kimg, sha256=info.sha256,
                             size=info.size, metrics=info.metrics, is_best=info.is_best, final=info.final))
            for key, size in stored:
                blobs.register(s, self.tenant, key, size, "job", self.job_id)
            event = {"job_id": self.job_id, **info.model_dump(mode="json")}
            emit(s, self.job_id, "job.checkpoint", event)
            if info.metrics:
                emit(s, self.job_id, "job.metrics", {"job_id": self.job_id, "checkpoint": info.name, "kimg": info.kimg,
                                                     "metrics": info.metrics, "is_best": info.is_best})
            return status

    def record_provenance(self, versions: dict[str, Any], dataset_sha256: str) -> str:
        with self.db.write() as s:
            return self._update(s, versions=versions, dataset_sha256=dataset_sha256)

    def note_resume(self, entry: dict[str, Any], truncate_after_kimg: float | None) -> str:
        """Record where this attempt starts (a resume or a rollback); ticks after that point are redone by
        this attempt, so they are dropped (all of them when `truncate_after_kimg` is None)."""
        with self.db.write() as s:
            resumes = s.scalar(select(Job.resumes).where(self._fence()))
            if resumes is None:
                raise LeaseLost(self._why(s))
            values: dict[str, Any] = {"resumes": [*resumes, entry]}
            if truncate_after_kimg is None:
                values.update(kimg=0.0, latest_tick=None)
            status = self._update(s, **values)
            q = delete(Tick).where(Tick.job_id == self.job_id)
            if truncate_after_kimg is not None:
                q = q.where(Tick.kimg > truncate_after_kimg + 1e-9)
            s.execute(q)
            return status

    def finish(self, status: JobStatus, error: str | None = None) -> None:
        """succeeded | failed | canceled, from running or cancelling. A job that trained to its end is
        `succeeded` even if a cancel arrived after its last tick."""
        values: dict[str, Any] = {"status": status.value, "error": error, "finished_at": db_now()}
        if status == JobStatus.succeeded:
            values.update(kimg=Job.total_kimg, eta_seconds=0.0)
        with self.db.write() as s:
            self._update(s, **values)
            emit_status(s, self.job_id)

    def requeue(self) -> str:
        """Hand the job back (worker shutdown): queued again, or canceled if a cancel came meanwhile."""
        cancelling = Job.status == JobStatus.cancelling.value
        with self.db.write() as s:
            new = case((cancelling, JobStatus.canceled.value), else_=JobStatus.queued.value)
            status = self._update(s, status=new, worker_id=None, heartbeat_at=None, enqueued_at=None,
                                  finished_at=case((cancelling, db_now()), else_=None))  # RETURNING: the new status
            emit_status(s, self.job_id)
            return status
