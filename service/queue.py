"""Enqueueing by task name, so the API never imports the worker's torch-heavy modules."""

from __future__ import annotations

from celery import Celery

from worker.celery_app import SWEEP_TASK, TRAIN_QUEUE, TRAIN_TASK, LIGHT_QUEUE


def enqueue_train(celery: Celery, tenant: str, job_id: str) -> str:
    result = celery.send_task(
        TRAIN_TASK, args=[job_id, tenant], queue=TRAIN_QUEUE,
        retry=True, retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
    )
    return result.id


def enqueue_sweep(celery: Celery) -> str:
    return celery.send_task(SWEEP_TASK, queue=LIGHT_QUEUE).id


def check_broker(celery: Celery, timeout: float = 3.0) -> None:
    """Raise if the broker cannot be reached (a real connection, not a config check)."""
    with celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2, timeout=timeout)
        conn.default_channel  # opens a channel: touches the SQLite file / Redis socket for real
