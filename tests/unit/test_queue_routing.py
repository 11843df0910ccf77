"""Routing by GPU count: the queue names, and where enqueue_train's message lands on a real (embedded SQLite) broker."""

from __future__ import annotations

import pytest

from service.core import queue
from service.core.queue import TRAIN_QUEUE, enqueue_train, job_gpus, train_queue, train_queues
from service.core.settings import Settings


def test_queue_names():
    assert train_queue(1) == TRAIN_QUEUE == "train"  # what deployed workers already consume
    assert train_queue(2) == "train-gpus-2" and train_queue(8) == "train-gpus-8"
    assert train_queues(1) == ["train"] and train_queues(0) == ["train"]
    assert train_queues(3) == ["train", "train-gpus-2", "train-gpus-3"]
    with pytest.raises(ValueError, match="gpus must be >= 1"):
        train_queue(0)


def test_job_gpus_reads_stored_configs():
    assert job_gpus({"gpus": 4}) == 4
    assert job_gpus({}) == job_gpus(None) == job_gpus({"gpus": None}) == 1  # configs from before multi-GPU


def _waiting(app, queue: str) -> int:
    with app.connection_for_read() as conn:
        return conn.default_channel.queue_declare(queue, passive=True).message_count


@pytest.fixture(params=["sqlite", "redis"])
def broker_url(request, tmp_path):
    """The embedded SQLite broker and a real Redis server (the production broker), when one is installed."""
    if request.param == "sqlite":
        yield ""
        return
    import shutil

    from tests.servers import free_port, start_redis_server, stop_redis_server

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = start_redis_server(port, data_dir=tmp_path / "redis")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_redis_server(proc)


def test_a_job_is_sent_to_the_queue_of_its_gpu_count(tmp_path, broker_url):
    settings = Settings(data_dir=tmp_path, broker_url=broker_url, result_backend="")
    queue.prepare_broker(settings)
    app = queue.make_celery(settings)
    enqueue_train(app, "t", "job-1")
    enqueue_train(app, "t", "job-2", 2)
    enqueue_train(app, "t", "job-2b", 2)
    assert (_waiting(app, "train"), _waiting(app, "train-gpus-2")) == (1, 2)
    with app.connection_for_read() as conn:  # the message itself: the job it names
        msg = conn.default_channel.basic_get("train-gpus-2")
        assert msg is not None and msg.headers["task"] == "worker.tasks.train" and "job-2" in msg.headers["argsrepr"]


def test_declared_queues_exist_before_any_worker_starts(tmp_path):
    """`service up` declares every queue from one process (declare_queues): the SQLite broker creates a
    queue's row on first use under a per-process lock only, so workers starting together used to race on
    the INSERT and one died (UNIQUE constraint failed: kombu_queue.name)."""
    import sqlite3

    settings = Settings(data_dir=tmp_path, broker_url="", result_backend="")
    queue.prepare_broker(settings)
    app = queue.make_celery(settings)
    queue.declare_service_queues(Settings(data_dir=tmp_path, broker_url="", result_backend="", max_job_gpus=2), app)
    queue.declare_queues(app, ["light", "train"])  # again (a restart): nothing to create, no error
    db = settings.broker_url.removeprefix("sqla+sqlite:///")
    with sqlite3.connect(db) as conn:
        names = sorted(name for (name,) in conn.execute("SELECT name FROM kombu_queue"))
    assert names == ["light", "train", "train-gpus-2"]
