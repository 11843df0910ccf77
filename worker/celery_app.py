"""The Celery app, configured from Settings (no torch import here: the API uses it to enqueue).

Reliability choices (see ../shared/docs/environment.md):
- acks_late + reject_on_worker_lost + prefetch 1: a task is acknowledged only when it ends,
  so a dead worker's task is not silently lost on brokers that support redelivery.
- a long Redis visibility_timeout so a running job is not handed to a second worker;
  re-delivery is still expected (after worker death, or from the stale sweep), and the
  train task is idempotent: it resumes from the latest stored checkpoint, and exits quietly
  when another live worker holds the job's lease.
"""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from service.settings import Settings, get_settings

TRAIN_QUEUE = "train"
LIGHT_QUEUE = "light"
TRAIN_TASK = "worker.tasks.train"
SWEEP_TASK = "worker.tasks.sweep_stale_jobs"


def _filesystem_options(settings: Settings) -> dict:
    # Same-filesystem folders: kombu moves a message into `processed` with a rename, which is
    # atomic, so two consumers never both take one message.
    root = settings.data_dir / "broker"
    for sub in ("queue", "processed"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(root / "queue"),
        "data_folder_out": str(root / "queue"),
        "processed_folder": str(root / "processed"),
        "store_processed": True,
        "polling_interval": settings.broker_polling_interval_s,
    }


def make_celery(settings: Settings) -> Celery:
    settings.ensure_dirs()
    app = Celery("diggan", broker=settings.broker_url, backend=settings.result_backend, include=["worker.tasks"])
    transport_options: dict = {}
    if settings.broker_url.startswith(("redis", "rediss", "valkey")):
        transport_options["visibility_timeout"] = settings.visibility_timeout_s
    elif settings.broker_url.startswith("filesystem"):
        transport_options = _filesystem_options(settings)
    # (sqla passes every transport option to create_engine, so it gets none; it polls once a second.)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,  # state lives in the job record, not the result backend
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        # Explicit exchanges + keys: a bare Queue(name) would bind to the default exchange with the
        # default key, and a train message could then land on the light queue too.
        task_queues=(
            Queue(TRAIN_QUEUE, Exchange(TRAIN_QUEUE, type="direct"), routing_key=TRAIN_QUEUE),
            Queue(LIGHT_QUEUE, Exchange(LIGHT_QUEUE, type="direct"), routing_key=LIGHT_QUEUE),
        ),
        task_default_queue=LIGHT_QUEUE,
        task_default_exchange=LIGHT_QUEUE,
        task_default_routing_key=LIGHT_QUEUE,
        task_routes={TRAIN_TASK: {"queue": TRAIN_QUEUE}, "worker.tasks.*": {"queue": LIGHT_QUEUE}},
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_enable_remote_control=not settings.embedded_broker,  # no fanout on sqla/filesystem
    )
    app.diggan_settings = settings  # type: ignore[attr-defined]
    return app


app = make_celery(get_settings())
