"""Who runs a job: a lease in the job record (worker id + fresh heartbeat).

A delivery of the train task takes the job only if no other live worker holds it; a
duplicate delivery (broker redelivery, sweep re-enqueue racing a slow worker) exits quietly.
Object stores have no compare-and-swap, so a claim is written, then read back after a short
pause: of two simultaneous claimers, the one whose write is not the last one backs off.
"""

from __future__ import annotations

import os
import socket
import time
import uuid

from service.jobs.records import JobRecord, JobRepo, JobStatus, utcnow
from service.settings import Settings

CLAIM_SETTLE_S = 0.3


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class LeaseLost(Exception):
    """Another worker took the job (this one was presumed dead); stop without writing."""


def holder_alive(rec: JobRecord, me: str, settings: Settings) -> bool:
    if rec.status not in (JobStatus.running, JobStatus.cancelling) or not rec.worker_id or rec.worker_id == me:
        return False
    age = rec.heartbeat_age()
    return age is not None and age < settings.stale_after_s


def claim(repo: JobRepo, tenant: str, job_id: str, me: str, settings: Settings, device: str) -> JobRecord | None:
    """Take the job; None when it is finished or held by another live worker."""
    outcome: dict[str, bool] = {}

    def take(r: JobRecord) -> bool:
        if r.terminal or holder_alive(r, me, settings):
            return False
        cancelling = r.status == JobStatus.cancelling or repo.cancel_requested(tenant, job_id)
        r.status = JobStatus.cancelling if cancelling else JobStatus.running
        r.worker_id, r.heartbeat_at, r.device = me, utcnow(), device
        r.attempt += 1
        r.started_at = r.started_at or utcnow()
        outcome["taken"] = True
        return True

    repo.update(tenant, job_id, take)
    if not outcome:
        return None
    time.sleep(CLAIM_SETTLE_S)
    rec = repo.get(tenant, job_id)
    return rec if rec.worker_id == me else None
