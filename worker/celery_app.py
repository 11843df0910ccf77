"""The worker's Celery app (`celery -A worker.celery_app:app worker -Q train`).

Built by the shared factory (service/core/queue.py) from the environment's settings; it opens no
connection and creates no file at import. See that module for the reliability choices.

A worker started on `train` also consumes the queues of the multi-GPU jobs it can run (`train-gpus-2` ..
`train-gpus-G` for the G GPUs it owns, DIGGAN_WORKER_GPUS), added at start-up so that `-Q train` stays the
one command every training worker is started with.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import celeryd_after_setup

from service.core.queue import SWEEP_TASK, TRAIN_QUEUE, TRAIN_TASK, direct_queue, make_celery, train_queues
from service.core.settings import get_settings

__all__ = ["SWEEP_TASK", "TRAIN_QUEUE", "TRAIN_TASK", "app"]

log = logging.getLogger(__name__)

app = make_celery(get_settings(), include=["worker.tasks"])


@celeryd_after_setup.connect
def _consume_gpu_queues(sender: str, instance: Any, **_: object) -> None:
    """After -Q is applied, before the consumer starts (Celery's documented place to add queues)."""
    queues = instance.app.amqp.queues
    if TRAIN_QUEUE not in queues.consume_from:  # a light-only worker takes no training jobs
        return
    from worker.runner import worker_gpus  # counts GPUs through NVML: CUDA stays uninitialised in this parent

    names = train_queues(worker_gpus(instance.app.diggan_settings))
    for name in names[1:]:
        queues.select_add(direct_queue(name))
    log.info("worker %s owns %d GPU(s); training queues: %s", sender, len(names), ", ".join(names))
