"""Celery tasks: `train` (queue `train`), `sweep` and `project` (queue `light`).

Both are safe to run twice: `train` claims the job with a conditional UPDATE (a duplicate delivery of
a job that is running or finished is dropped) and resumes from the latest registered checkpoint.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from functools import lru_cache

from celery.exceptions import Reject
from celery.signals import setup_logging, worker_init, worker_process_init, worker_ready, worker_shutting_down

from service.core.jobs import JobStatus
from service.core.lease import LeaseLost, claim, new_worker_id
from service.core.logs import configure_logging, log_context, set_log_context
from service.core.queue import CALIBRATE_TASK, PROJECT_TASK, enqueue_projection, enqueue_train, job_gpus, prepare_broker
from service.core.services import Core, open_core
from service.core.settings import Settings
from service.core.sweep import sweep as _sweep
from worker.celery_app import SWEEP_TASK, TRAIN_TASK, app

log = logging.getLogger(__name__)

# Set on warm shutdown (SIGTERM): the running job stops at its next tick with a final checkpoint
# and is handed back to the queue instead of being killed mid-tick by the orchestrator.
SHUTDOWN = threading.Event()
WORKER_ID = new_worker_id()


def settings() -> Settings:
    return app.diggan_settings  # type: ignore[attr-defined]


@lru_cache(maxsize=1)
def core() -> Core:
    return open_core(settings())


@setup_logging.connect
def _on_setup_logging(**_: object) -> None:
    """Our format instead of Celery's (connecting to this signal stops Celery configuring logging)."""
    s = settings()
    configure_logging(s.log_format, s.log_level)


@worker_init.connect
def _on_init(**_: object) -> None:
    prepare_broker(settings())  # before the consumer starts: the embedded broker's files
    from worker.metrics import serve

    serve(settings().worker_metrics_port)


@worker_process_init.connect
def _on_process_init(**_: object) -> None:
    core.cache_clear()  # a forked child opens its own connections


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


def _run_sweep() -> list:
    c = core()
    return _sweep(c.db, c.settings, lambda t, j, g: enqueue_train(app, t, j, g), c.store,
                  enqueue_projection=lambda t, p: enqueue_projection(app, t, p))


def _sweep_quietly() -> None:
    try:
        _run_sweep()
    except Exception:
        log.exception("startup sweep failed")


@app.task(name=TRAIN_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def train(job_id: str, tenant: str = "default", request_id: str | None = None) -> str:
    """Train one job; safe to run twice (the claim + resume from the latest registered checkpoint). Every log
    line it makes carries the job id, tenant, attempt and the id of the request that queued it."""
    with log_context(request_id=request_id, job_id=job_id, tenant=tenant):
        return _train(job_id, tenant)


def _train(job_id: str, tenant: str) -> str:
    from worker.metrics import GPUS
    from worker.runner import JobRunner, configure_torch, pick_device, user_message, worker_gpus

    if SHUTDOWN.is_set():  # a message taken during a warm shutdown goes back to the queue, for another worker
        raise Reject("this worker is shutting down", requeue=True)
    c, s = core(), settings()
    configure_torch(s)
    device = pick_device(s.device)
    # Advertised on the worker's metrics (CUDA is first touched here, in the process that trains, never in the
    # parent that forks the pool).
    GPUS.set(worker_gpus(s))
    rec = claim(c.db, tenant, job_id, WORKER_ID, device, s.stale_after_s, s.max_attempts)
    if rec is None:
        log.info("train: job %s is not queued (finished, missing, or held by a live worker); duplicate delivery "
                 "dropped", job_id)
        return "skipped"
    set_log_context(attempt=rec.attempt)
    log.info("train: job %s attempt %d on %s (%s)", job_id, rec.attempt, device, WORKER_ID)
    runner = JobRunner(c, rec, WORKER_ID, device, shutdown=SHUTDOWN)
    try:
        status = runner.run()
        if status == JobStatus.queued.value:  # handed back on shutdown: send it again now (else the sweep does)
            _resend(c, tenant, job_id, job_gpus(rec.config))
        return status
    except LeaseLost as e:
        log.warning("train: %s; stopping without writing", e)
        return "lease-lost"
    except Exception as e:  # every failure ends the job with a message a user can act on
        log.exception("train: job %s failed", job_id)
        runner.fail(user_message(e))
        return JobStatus.failed.value


def _resend(c: Core, tenant: str, job_id: str, gpus: int) -> None:
    try:
        enqueue_train(app, tenant, job_id, gpus)
        c.jobs.mark_enqueued(job_id)
    except Exception as e:
        log.warning("could not re-send job %s (%s); the sweep will", job_id, e)


@app.task(name=CALIBRATE_TASK, ignore_result=True)
def calibrate(signature: str, config: dict) -> float | None:
    """Time a setup on this worker's device for POST /v1/jobs/estimate; skipped if measured meanwhile."""
    from service.core import calibration
    from worker.calibrate import measure
    from worker.runner import configure_torch, pick_device

    c, s = core(), settings()
    if calibration.latest(c.db, signature) is not None:
        return None  # another worker (or an earlier request) measured it already
    configure_torch(s)
    device = pick_device(s.device)
    sec_per_kimg = measure(config, device)
    calibration.record(c.db, signature, device, sec_per_kimg)
    log.info("calibrated %s on %s: %.1f s/kimg", signature[:12], device, sec_per_kimg)
    return sec_per_kimg


@app.task(name=SWEEP_TASK, ignore_result=True)
def sweep() -> list:
    return _run_sweep()


# ------------------------------------------------------------------------------------ projections


@app.task(name=PROJECT_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def project(projection_id: str, tenant: str = "default", request_id: str | None = None) -> str:
    """Project one request's images (worker/projection.py); safe to run twice: the claim is a conditional
    UPDATE, so a duplicate delivery of a projection that is running or finished is dropped."""
    with log_context(request_id=request_id, tenant=tenant):
        return _project(projection_id, tenant)


def _project(projection_id: str, tenant: str) -> str:
    from service.core.projections import ProjectionStatus
    from service.core.projections import claim as claim_projection
    from worker.projection import ProjectionRunner, user_message
    from worker.runner import configure_torch, pick_device

    if SHUTDOWN.is_set():
        raise Reject("this worker is shutting down", requeue=True)
    c, s = core(), settings()
    rec = claim_projection(c.db, tenant, projection_id, WORKER_ID, s.stale_after_s, s.max_attempts)
    if rec is None:
        log.info("project: projection %s is not queued (finished, missing, or held by a live worker); duplicate "
                 "delivery dropped", projection_id)
        return "skipped"
    set_log_context(job_id=rec.job_id, attempt=rec.attempt)
    configure_torch(s)
    device = pick_device(s.device)
    log.info("project: projection %s attempt %d (%d image(s), %s steps, %s) on %s", projection_id, rec.attempt,
             len(rec.images), rec.config.get("steps"), rec.config.get("distance"), device)
    runner = ProjectionRunner(c, rec, device, shutdown=SHUTDOWN)
    try:
        status = runner.run()
    except Exception as e:  # every failure ends the projection with a message a user can act on
        log.exception("project: projection %s failed", projection_id)
        runner.fail(user_message(e))
        return ProjectionStatus.failed.value
    if status == ProjectionStatus.queued.value:  # handed back on shutdown: send it again (else the sweep does)
        try:
            enqueue_projection(app, tenant, projection_id)
            c.projections.mark_enqueued(projection_id)
        except Exception as e:
            log.warning("could not re-send projection %s (%s); the sweep will", projection_id, e)
    return status
