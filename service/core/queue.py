"""Queue names, the Celery app factory, and enqueueing by task name.

The API enqueues through here and never imports worker/; the worker builds its Celery app with the
same factory. Building an app opens no connection and creates no file: the embedded filesystem
broker's folders are made by `prepare_broker` (called by `service up` and at worker start-up).

Reliability (see ../shared/docs/environment.md): acks_late + reject_on_worker_lost + prefetch 1, a
long Redis visibility_timeout, and tasks that are safe to run twice (the claim is a conditional
UPDATE; a duplicate delivery of a job that is running or finished is dropped). Messages can still be
lost (Redis' fsync window, a flushed queue): the sweep re-sends queued jobs (service/core/sweep.py).

Routing by GPU count (docs/multi-gpu.md): a job asking `gpus: N` goes to `train_queue(N)` (`train` for one
GPU, `train-gpus-N` above), and a worker owning G GPUs consumes `train_queues(G)` (worker/celery_app.py
adds them at start-up), so a job only ever reaches a worker that can run it.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from service.core.settings import Settings

TRAIN_QUEUE = "train"
LIGHT_QUEUE = "light"
TRAIN_TASK = "worker.tasks.train"
SWEEP_TASK = "worker.tasks.sweep"
CALIBRATE_TASK = "worker.tasks.calibrate"
PROJECT_TASK = "worker.tasks.project"  # a projection (GAN inversion): CPU-bound, on the light queue


def train_queue(gpus: int) -> str:
    """The queue of a job asking for `gpus` GPUs (one GPU keeps the `train` name deployed workers consume)."""
    if gpus < 1:
        raise ValueError(f"gpus must be >= 1, got {gpus}")
    return TRAIN_QUEUE if gpus == 1 else f"{TRAIN_QUEUE}-gpus-{gpus}"


def train_queues(owned: int) -> list[str]:
    """The training queues of a worker owning `owned` GPUs: every job size it can run, smallest first."""
    return [train_queue(n) for n in range(1, max(1, owned) + 1)]


def job_gpus(config: dict[str, Any] | None) -> int:
    """The GPUs a stored job config asks for (configs from before multi-GPU have no `gpus`: one)."""
    return max(1, int((config or {}).get("gpus") or 1))


def direct_queue(name: str) -> Queue:
    # Explicit exchange + key, as every declared queue (see make_celery): a message for one queue lands only there.
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def _filesystem_options(settings: Settings) -> dict[str, Any]:
    # Same-filesystem folders: kombu moves a message into `processed` with a rename, which is
    # atomic, so two consumers never both take one message.
    root = settings.data_dir / "broker"
    return {
        "data_folder_in": str(root / "queue"),
        "data_folder_out": str(root / "queue"),
        "processed_folder": str(root / "processed"),
        "store_processed": True,
        "polling_interval": settings.broker_polling_interval_s,
    }


def prepare_broker(settings: Settings) -> None:
    """Create what an embedded broker needs on disk (idempotent)."""
    settings.ensure_dirs()
    if settings.broker_url.startswith("filesystem"):
        for sub in ("queue", "processed"):
            (settings.data_dir / "broker" / sub).mkdir(parents=True, exist_ok=True)


def make_celery(settings: Settings, include: list[str] | None = None) -> Celery:
    app = Celery("diggan", broker=settings.broker_url, backend=settings.result_backend, include=include or [])
    transport_options: dict[str, Any] = {}
    if settings.broker_url.startswith(("redis", "rediss", "valkey")):
        transport_options["visibility_timeout"] = settings.visibility_timeout_s
    elif settings.broker_url.startswith("filesystem"):
        transport_options = _filesystem_options(settings)
    # (sqla passes every transport option to create_engine, so it gets none; it polls once a second.)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,  # state lives in the database, not the result backend
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        # Explicit exchanges + keys: a bare Queue(name) would bind to the default exchange with the
        # default key, and a train message could then land on the light queue too.
        task_queues=(
            direct_queue(TRAIN_QUEUE),
            direct_queue(LIGHT_QUEUE),
        ),
        task_default_queue=LIGHT_QUEUE,
        task_default_exchange=LIGHT_QUEUE,
        task_default_routing_key=LIGHT_QUEUE,
        task_routes={TRAIN_TASK: {"queue": TRAIN_QUEUE}, CALIBRATE_TASK: {"queue": TRAIN_QUEUE},
                     "worker.tasks.*": {"queue": LIGHT_QUEUE}},
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_enable_remote_control=not settings.embedded_broker,  # no fanout on sqla/filesystem
    )
    app.diggan_settings = settings  # type: ignore[attr-defined]
    return app


def enqueue_train(celery: Celery, tenant: str, job_id: str, gpus: int = 1) -> str:
    """Send a job to the training queue for its GPU count (`job_gpus(config)`), with the request id of the
    request that caused it (for the logs)."""
    from service.core.logs import current

    queue = train_queue(gpus)
    if queue not in celery.amqp.queues:  # declared on first use, the same way as the fixed ones
        celery.amqp.queues.add(direct_queue(queue))
    result = celery.send_task(
        TRAIN_TASK, args=[job_id, tenant], kwargs={"request_id": current("request_id")}, queue=queue,
        retry=True, retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
    )
    return result.id


def enqueue_calibration(celery: Celery, signature: str, config: dict[str, Any]) -> str:
    """Ask a training worker (its device is the one that matters) to time this setup; on `train`, which every
    training worker consumes (a calibration times one process)."""
    return celery.send_task(CALIBRATE_TASK, args=[signature, config], queue=TRAIN_QUEUE).id


def enqueue_projection(celery: Celery, tenant: str, projection_id: str) -> str:
    """Send a projection to the light queue (safe to send twice: the worker claims it with a conditional UPDATE)."""
    from service.core.logs import current

    result = celery.send_task(
        PROJECT_TASK, args=[projection_id, tenant], kwargs={"request_id": current("request_id")}, queue=LIGHT_QUEUE,
        retry=True, retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
    )
    return result.id


def enqueue_sweep(celery: Celery) -> str:
    return celery.send_task(SWEEP_TASK, queue=LIGHT_QUEUE).id


def declare_queues(celery: Celery, names: list[str]) -> None:
    """Create the broker's queues from one process, one after another. The SQLite broker (the embedded default)
    creates a queue's row on first use with a per-process lock only, so two workers starting at once can both
    INSERT it and one dies on the unique name (seen in tests/e2e/test_end_to_end.py); declared here first, every
    worker finds its queues. On Redis a declare is a no-op."""
    with celery.connection_for_write() as conn:
        channel = conn.default_channel
        for name in names:
            direct_queue(name)(channel).declare()


def declare_service_queues(settings: Settings, celery: Celery) -> None:
    """Every queue the workers consume or the API sends to (light, train, train-gpus-N up to the larger of the
    job limit and this machine's workers), from this one process: call before starting workers."""
    declare_queues(celery, [LIGHT_QUEUE, *train_queues(max(settings.max_job_gpus, settings.worker_gpus or 1))])


def check_broker(celery: Celery, timeout: float = 3.0) -> None:
    """Raise if the broker cannot be reached (a real connection, not a config check)."""
    with celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2, timeout=timeout)
        _ = conn.default_channel  # a property read that opens a channel: touches the SQLite file / Redis socket for real
