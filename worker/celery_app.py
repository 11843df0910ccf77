"""The worker's Celery app (`celery -A worker.celery_app:app worker -Q train`).

Built by the shared factory (service/core/queue.py) from the environment's settings; it opens no
connection and creates no file at import. See that module for the reliability choices.
"""

from __future__ import annotations

from service.core.queue import SWEEP_TASK, TRAIN_QUEUE, TRAIN_TASK, make_celery
from service.core.settings import get_settings

__all__ = ["SWEEP_TASK", "TRAIN_QUEUE", "TRAIN_TASK", "app"]

app = make_celery(get_settings(), include=["worker.tasks"])
