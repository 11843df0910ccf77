"""The stale-heartbeat sweep: no job stays `running` forever after its worker died.

A running job whose heartbeat is older than `stale_after_s` is re-queued (the next worker
resumes from its latest checkpoint) until it has had `max_attempts` attempts; then it is
failed with a reason. A dead worker's `cancelling` job simply ends `canceled`.
Safe to run from several processes at once: every decision is re-checked on a fresh read,
and a duplicate enqueue is harmless (the train task's lease check drops it).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Callable

from service.jobs.records import JobRecord, JobRepo, JobStatus, utcnow
from service.settings import Settings
from service.storage import StorageError

log = logging.getLogger(__name__)

ORPHAN_INDEX_GRACE_S = 120.0  # an index entry may precede its record by this long during create


def _stale(rec: JobRecord, settings: Settings) -> bool:
    ref = rec.heartbeat_at or rec.started_at or rec.updated_at
    return (utcnow() - ref).total_seconds() > settings.stale_after_s


def sweep_stale_jobs(repo: JobRepo, settings: Settings, enqueue: Callable[[str, str], object]) -> list[tuple[str, str]]:
    """One pass. Returns (job_id, action) for every job it changed."""
    actions: list[tuple[str, str]] = []
    for tenant, job_id, indexed_at in repo.active():
        try:
            action = _sweep_one(repo, settings, enqueue, tenant, job_id, indexed_at)
        except StorageError as e:
            log.warning("sweep: job %s skipped: %s", job_id, e)
            continue
        if action:
            actions.append((job_id, action))
            log.warning("sweep: job %s: %s", job_id, action)
    return actions


def _sweep_one(repo: JobRepo, settings: Settings, enqueue: Callable[[str, str], object], tenant: str, job_id: str,
               indexed_at) -> str | None:
    rec = repo.find(tenant, job_id)
    if rec is None:
        if (utcnow() - indexed_at).total_seconds() > ORPHAN_INDEX_GRACE_S:
            repo.drop_active(tenant, job_id)
            return "dropped orphan index entry"
        return None
    if rec.terminal:
        repo.drop_active(tenant, job_id)
        return None
    if rec.status == JobStatus.queued:
        if rec.enqueued_at is None and (utcnow() - rec.updated_at) > timedelta(seconds=5):
            return _enqueue(repo, enqueue, rec, "re-sent a queued job the broker never got")
        return None
    if not _stale(rec, settings):
        return None

    decided: dict[str, str] = {}

    def decide(r: JobRecord) -> bool:
        if r.terminal or r.status == JobStatus.queued or not _stale(r, settings):
            return False  # changed since we looked: a worker is alive after all
        age = (utcnow() - (r.heartbeat_at or r.updated_at)).total_seconds()
        if r.status == JobStatus.cancelling or repo.cancel_requested(tenant, job_id):
            r.status, r.finished_at = JobStatus.canceled, utcnow()
            r.error = None
            decided["action"] = "canceled (worker lost while cancelling)"
        elif r.attempt >= settings.max_attempts:
            r.status, r.finished_at = JobStatus.failed, utcnow()
            r.error = (
                f"the worker running this job stopped responding {r.attempt} time(s) (last heartbeat {age:.0f} s ago), "
                f"so the job was given up after {settings.max_attempts} attempts. Workers dying repeatedly usually "
                "means they run out of memory: start a new job with a smaller batch_size or preset."
            )
            decided["action"] = "failed (too many attempts)"
        else:
            r.status, r.worker_id, r.heartbeat_at, r.enqueued_at = JobStatus.queued, None, None, utcnow()
            decided["action"] = f"re-queued (heartbeat {age:.0f} s old, attempt {r.attempt})"
        return True

    rec = repo.update(tenant, job_id, decide)
    action = decided.get("action")
    if action and action.startswith("re-queued"):
        _send(repo, enqueue, rec)
    return action


def _enqueue(repo: JobRepo, enqueue: Callable[[str, str], object], rec: JobRecord, action: str) -> str | None:
    rec = repo.update(rec.tenant, rec.id, lambda r: False if r.status != JobStatus.queued else setattr(r, "enqueued_at", utcnow()))
    if rec.status != JobStatus.queued:
        return None
    return action if _send(repo, enqueue, rec) else None


def _send(repo: JobRepo, enqueue: Callable[[str, str], object], rec: JobRecord) -> bool:
    try:
        enqueue(rec.tenant, rec.id)
        return True
    except Exception as e:  # broker down: mark it un-sent so a later sweep retries
        log.warning("sweep: could not enqueue job %s: %s", rec.id, e)
        repo.update(rec.tenant, rec.id, lambda r: False if r.status != JobStatus.queued else setattr(r, "enqueued_at", None))
        return False
