"""Celery tasks: `train` (queue `train`) and `sweep_stale_jobs` (queue `light`)."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from functools import lru_cache

from celery.signals import worker_ready, worker_shutting_down

from service.jobs.records import JobRepo, JobStatus
from service.jobs.sweep import sweep_stale_jobs as _sweep
from service.queue import enqueue_train
from service.settings import Settings
from service.storage import ObjectNotFound, build_store
from worker.celery_app import SWEEP_TASK, TRAIN_TASK, app
from worker.lease import LeaseLost, claim, new_worker_id

log = logging.getLogger(__name__)

# Set on warm shutdown (SIGTERM): the running job stops at its next tick with a final checkpoint
# and is handed back to the queue instead of being killed mid-tick by the orchestrator.
SHUTDOWN = threading.Event()
WORKER_ID = new_worker_id()


def settings() -> Settings:
    return app.diggan_settings  # type: ignore[attr-defined]


@lru_cache(maxsize=1)
def repo() -> JobRepo:
    return JobRepo(build_store(settings()))


@worker_shutting_down.connect
def _on_shutdown(**_: object) -> None:
    SHUTDOWN.set()


@worker_ready.connect
def _on_ready(sender=None, **_: object) -> None:
    # A worker (re)starting is the moment orphaned jobs are most likely: sweep once, off-thread.
    threading.Thread(target=_sweep_quietly, daemon=True, name="startup-sweep").start()
    parent = os.environ.get("DIGGAN_EXIT_WITH_PARENT")
    if parent and parent.isdigit():
        threading.Thread(target=_exit_with_parent, args=(int(parent),), daemon=True, name="parent-watch").start()


def _exit_with_parent(parent_pid: int) -> None:
    """Workers spawned by `python -m service up` must not outlive it, even if it is SIGKILLed."""
    while os.getppid() == parent_pid:
        time.sleep(2.0)
    log.warning("parent process %d is gone; shutting down (a running job checkpoints and is re-queued)", parent_pid)
    os.kill(os.getpid(), signal.SIGTERM)  # Celery's warm shutdown


def _sweep_quietly() -> None:
    try:
        _sweep(repo(), settings(), lambda t, j: enqueue_train(app, t, j))
    except Exception:
        log.exception("startup sweep failed")


@app.task(name=TRAIN_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def train(job_id: str, tenant: str = "default") -> str:
    """Train one job; safe to run twice (lease + resume from the latest stored checkpoint)."""
    from worker.runner import JobRunner, configure_torch, pick_device, user_message

    jobs, s = repo(), settings()
    configure_torch(s)
    device = pick_device(s.device)
    try:
        rec = claim(jobs, tenant, job_id, WORKER_ID, s, device)
    except ObjectNotFound:
        log.warning("train: job %s/%s does not exist; dropping the message", tenant, job_id)
        return "missing"
    if rec is None:
        log.info("train: job %s is finished or held by another live worker; duplicate delivery dropped", job_id)
        return "skipped"
    log.info("train: job %s attempt %d on %s (%s)", job_id, rec.attempt, device, WORKER_ID)
    runner = JobRunner(jobs, jobs.store, s, rec, WORKER_ID, device, shutdown=SHUTDOWN)
    try:
        return runner.run()
    except LeaseLost:
        log.warning("train: job %s was taken over by another worker; stopping without writing", job_id)
        return "lease-lost"
    except Exception as e:  # every failure ends the job with a message a user can act on
        log.exception("train: job %s failed", job_id)
        runner.fail(user_message(e))
        return JobStatus.failed.value


@app.task(name=SWEEP_TASK, ignore_result=True)
def sweep_stale_jobs() -> list:
    return _sweep(repo(), settings(), lambda t, j: enqueue_train(app, t, j))
