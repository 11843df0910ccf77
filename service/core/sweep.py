"""The sweep: nothing stays running, queued or half-uploaded forever.

One pass (run by every API process on a timer and by a worker at start-up; passes may overlap, since
every decision is a conditional UPDATE on the database's clock):
- a `running` job whose heartbeat is stale is re-queued (the next worker resumes from its latest
  checkpoint), or failed with a reason after `max_attempts`; a stale `cancelling` job ends `canceled`;
- a `queued` job whose message never reached the broker, or may have been lost since, is sent (again),
  with a backoff so a job waiting behind others does not pile up copies (duplicates are harmless); every
  send says how many GPUs the job asks for, so it goes to the queue of workers owning that many;
- uploads that never finished are removed with their objects; deleted resources' objects are purged;
- expired idempotency keys and old rate-limit windows are forgotten;
- projections (service/core/projections.py) get the same two steps as jobs, when the caller passes how to
  send one: a stale `running` one is re-queued (its finished images are kept) or failed after `max_attempts`,
  and a queued one whose message is missing or old is sent (again).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, select

from service.core import object_keys
from service.core.blobs import purge_deleted, release_prefix
from service.core.db.engine import Database
from service.core.db.models import Dataset, IdempotencyKey, Job, Model, Projection, RateBucket
from service.core.db.sql import conditional_update, rows_affected
from service.core.db.types import db_now, seconds_before_now
from service.core.jobs import JobStatus
from service.core.queue import job_gpus
from service.core.settings import Settings
from service.core.storage import ObjectStore
from service.core.webhooks import emit_status

log = logging.getLogger(__name__)

UNSENT_GRACE_S = 5.0  # the API sends right after its commit; give it this long before the sweep does
RESEND_CAP_S = 3600.0

Enqueue = Callable[[str, str], object]  # (tenant, projection_id)
EnqueueJob = Callable[[str, str, int], object]  # (tenant, job_id, gpus): gpus picks the queue (queue.train_queue)


def sweep(db: Database, settings: Settings, enqueue: EnqueueJob, store: ObjectStore | None = None,
          enqueue_projection: Enqueue | None = None) -> list[tuple[str, str]]:
    """One pass; returns (id, action) for everything it changed. `enqueue(tenant, job_id, gpus)` sends a job
    to the training queue for its GPU count; `enqueue_projection(tenant, projection_id)` sends a projection
    to the light queue (without it, projections are left alone)."""
    actions: list[tuple[str, str]] = []
    steps: list[tuple[Callable[..., list[tuple[str, str]]], Any]] = [(_stale_leases, enqueue), (_unsent_jobs, enqueue)]
    if enqueue_projection is not None:
        steps += [(_stale_projections, enqueue_projection), (_unsent_projections, enqueue_projection)]
    for step, send in steps:
        try:
            actions += step(db, settings, send)
        except Exception:  # one failing step must not stop the others
            log.exception("sweep step %s failed; the next pass retries", step.__name__)
    try:
        actions += _orphan_uploads(db, settings)
        _forget_expired(db, settings)
        if store is not None:
            purge_deleted(db, store)
    except Exception:
        log.exception("sweep clean-up failed; the next pass retries")
    for ident, action in actions:
        log.warning("sweep: %s: %s", ident, action)
    return actions


def _stale_leases(db: Database, settings: Settings, enqueue: EnqueueJob) -> list[tuple[str, str]]:
    stale = and_(Job.status.in_((JobStatus.running.value, JobStatus.cancelling.value)),
                 Job.heartbeat_at < seconds_before_now(settings.stale_after_s))
    with db.read() as s:
        now = s.scalar(select(db_now()))
        rows = s.execute(select(Job.id, Job.tenant, Job.status, Job.attempt, Job.heartbeat_at, Job.config)
                         .where(stale)).all()
    actions = []
    for row in rows:
        age = (now - row.heartbeat_at).total_seconds() if row.heartbeat_at else 0.0
        same = and_(Job.id == row.id, Job.attempt == row.attempt, stale)  # unchanged since we looked
        values: dict[str, Any]  # the columns this outcome sets
        if row.status == JobStatus.cancelling.value:
            values, action = {"status": JobStatus.canceled.value, "finished_at": db_now()}, \
                "canceled (its worker was lost while cancelling)"
        elif row.attempt >= settings.max_attempts:
            values = {"status": JobStatus.failed.value, "finished_at": db_now(), "error": (
                f"the worker running this job stopped responding {row.attempt} time(s) (last heartbeat {age:.0f} s "
                f"ago), so the job was given up after {settings.max_attempts} attempts. Workers dying repeatedly "
                "usually means they run out of memory: start a new job with a smaller batch_size or preset.")}
            action = "failed (too many attempts)"
        else:
            values = {"status": JobStatus.queued.value, "worker_id": None, "heartbeat_at": None, "enqueued_at": None}
            action = f"re-queued (heartbeat {age:.0f} s old, attempt {row.attempt})"
        with db.write() as s:
            won = rows_affected(s, conditional_update(Job).where(same).values(updated_at=db_now(), **values))
            if won:
                emit_status(s, row.id)
        if won:
            actions.append((row.id, action))
            if values["status"] == JobStatus.queued.value:
                _send(db, enqueue, row.tenant, row.id, job_gpus(row.config))
    return actions


def resend_due(enqueued_at: datetime | None, updated_at: datetime, count: int, now: datetime,
               resend_after_s: float) -> bool:
    """Is a queued job's message missing (never sent) or old enough to be sent again?"""
    if enqueued_at is None:
        return (now - updated_at).total_seconds() > UNSENT_GRACE_S
    wait = min(resend_after_s * 2 ** max(0, count - 1), RESEND_CAP_S)
    return (now - enqueued_at).total_seconds() > wait


def _unsent_jobs(db: Database, settings: Settings, enqueue: EnqueueJob) -> list[tuple[str, str]]:
    with db.read() as s:
        now = s.scalar(select(db_now()))
        rows = s.execute(select(Job.id, Job.tenant, Job.enqueued_at, Job.updated_at, Job.enqueue_count, Job.config)
                         .where(Job.status == JobStatus.queued.value)
                         .order_by(Job.id).limit(1000)).all()
    actions = []
    for r in rows:
        if resend_due(r.enqueued_at, r.updated_at, r.enqueue_count, now, settings.resend_queued_after_s):
            if _send(db, enqueue, r.tenant, r.id, job_gpus(r.config)):
                actions.append((r.id, "sent to the queue" if r.enqueued_at is None else
                                f"sent again (queued since {r.enqueued_at:%H:%M:%S}, message may be lost)"))
    return actions


def _send(db: Database, enqueue: EnqueueJob, tenant: str, job_id: str, gpus: int) -> bool:
    try:
        enqueue(tenant, job_id, gpus)
    except Exception as e:  # broker down: the job stays unsent, and a later pass retries
        log.warning("sweep: could not enqueue job %s: %s", job_id, e)
        return False
    with db.write() as s:
        s.execute(conditional_update(Job).where(Job.id == job_id, Job.status == JobStatus.queued.value)
                  .values(enqueued_at=db_now(), enqueue_count=Job.enqueue_count + 1))
    return True


def _stale_projections(db: Database, settings: Settings, enqueue: Enqueue) -> list[tuple[str, str]]:
    """A running projection whose worker stopped beating: re-queued (a new attempt skips the images already
    done), canceled if a cancel was asked, or failed after max_attempts. Same rules as _stale_leases."""
    stale = and_(Projection.status == "running", Projection.heartbeat_at < seconds_before_now(settings.stale_after_s))
    with db.read() as s:
        rows = s.execute(select(Projection.id, Projection.tenant, Projection.attempt, Projection.cancel_requested_at)
                         .where(stale)).all()
    actions = []
    for row in rows:
        same = and_(Projection.id == row.id, Projection.attempt == row.attempt, stale)
        values: dict[str, Any]  # the columns this outcome sets
        if row.cancel_requested_at is not None:
            values, action = {"status": "canceled", "finished_at": db_now()}, "projection canceled (worker lost)"
        elif row.attempt >= settings.max_attempts:
            values = {"status": "failed", "finished_at": db_now(), "error": (
                f"the worker running this projection stopped responding {row.attempt} time(s), so it was given up "
                f"after {settings.max_attempts} attempts (a worker running out of memory is the usual cause); the "
                "images it finished are kept. Start a new projection with fewer images or steps")}
            action = "projection failed (too many attempts)"
        else:
            values = {"status": "queued", "worker_id": None, "enqueued_at": None}
            action = f"projection re-queued (attempt {row.attempt})"
        with db.write() as s:
            won = rows_affected(s, conditional_update(Projection).where(same).values(updated_at=db_now(), **values))
        if won:
            actions.append((row.id, action))
            if values["status"] == "queued":
                _send_projection(db, enqueue, row.tenant, row.id)
    return actions


def _unsent_projections(db: Database, settings: Settings, enqueue: Enqueue) -> list[tuple[str, str]]:
    with db.read() as s:
        now = s.scalar(select(db_now()))
        rows = s.execute(select(Projection.id, Projection.tenant, Projection.enqueued_at, Projection.updated_at,
                                Projection.enqueue_count)
                         .where(Projection.status == "queued").order_by(Projection.id).limit(1000)).all()
    actions = []
    for r in rows:
        if resend_due(r.enqueued_at, r.updated_at, r.enqueue_count, now, settings.resend_queued_after_s) \
                and _send_projection(db, enqueue, r.tenant, r.id):
            actions.append((r.id, "projection sent to the queue" if r.enqueued_at is None else "projection sent again"))
    return actions


def _send_projection(db: Database, enqueue: Enqueue, tenant: str, projection_id: str) -> bool:
    try:
        enqueue(tenant, projection_id)
    except Exception as e:  # broker down: a later pass retries
        log.warning("sweep: could not enqueue projection %s: %s", projection_id, e)
        return False
    with db.write() as s:
        s.execute(conditional_update(Projection).where(Projection.id == projection_id, Projection.status == "queued")
                  .values(enqueued_at=db_now(), enqueue_count=Projection.enqueue_count + 1))
    return True


def _orphan_uploads(db: Database, settings: Settings) -> list[tuple[str, str]]:
    """Datasets and models whose upload died half way: rows, blobs and objects go."""
    actions = []
    old = seconds_before_now(settings.upload_orphan_after_s)
    for model, prefix_of in ((Dataset, object_keys.dataset_prefix), (Model, object_keys.model_prefix)):
        with db.write() as s:
            rows = s.execute(select(model.id, model.tenant).where(model.status == "uploading",
                                                                   model.created_at < old)).all()
            for r in rows:
                s.execute(delete(model).where(model.id == r.id, model.status == "uploading"))
                release_prefix(s, r.tenant, prefix_of(r.tenant, r.id))
                actions.append((r.id, "removed an upload that never finished"))
    return actions


def _forget_expired(db: Database, settings: Settings) -> None:
    with db.write() as s:
        s.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < seconds_before_now(settings.idempotency_ttl_s)))
        # A bucket untouched for an hour has long refilled: forgetting it changes nothing.
        s.execute(delete(RateBucket).where(RateBucket.stamp < time.time() - 3600))
