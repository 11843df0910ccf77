"""Prometheus metrics at GET /metrics: the HTTP metrics of prometheus-fastapi-instrumentator (requests,
latency, sizes per route), plus the service's own, read from the database at scrape time, so every API
replica reports the same, whole-system figures:

    diggan_jobs{status}                      jobs per state
    diggan_queue_depth                       jobs waiting for a worker
    diggan_ticks_total / diggan_ticks_per_second   training ticks recorded (all time / the last minute)
    diggan_checkpoints_total                 checkpoints registered
    diggan_job_seconds_per_kimg{job_id}      the latest tick's speed of each running job
    diggan_worker_heartbeat_age_seconds{worker_id}  how long ago each busy worker last checked in
    diggan_webhook_deliveries{status}        webhook outbox by state

Workers serve their own (checkpoint upload time and failures, GPU memory) on DIGGAN_WORKER_METRICS_PORT.

Protected: with DIGGAN_METRICS_TOKEN set, a scrape must send `Authorization: Bearer <token>`; without it,
/metrics answers only while auth is off (then the app serves loopback clients only anyway).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_fastapi_instrumentator import Instrumentator
from sqlalchemy import func, select

from service.core.db.models import Checkpoint, Job, Tick, WebhookDelivery
from service.core.db.types import db_now, seconds_before_now
from service.core.jobs import JobStatus


class DatabaseCollector:
    """Collected at each scrape (a handful of indexed aggregate queries)."""

    def __init__(self, core: Any):
        self.core = core

    def collect(self) -> Iterator[Any]:
        with self.core.db.read() as s:
            by_status = dict(s.execute(select(Job.status, func.count()).group_by(Job.status)).all())
            ticks = s.scalar(select(func.count()).select_from(Tick)) or 0
            recent = s.scalar(select(func.count()).select_from(Tick).where(Tick.created_at >= seconds_before_now(60)))
            checkpoints = s.scalar(select(func.count()).select_from(Checkpoint)) or 0
            now = s.scalar(select(db_now()))
            running = s.execute(select(Job.id, Job.worker_id, Job.heartbeat_at, Job.latest_tick)
                                .where(Job.status.in_((JobStatus.running.value, JobStatus.cancelling.value)))
                                .limit(1000)).all()
            hooks = dict(s.execute(select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)).all())
        jobs = GaugeMetricFamily("diggan_jobs", "Jobs per state", labels=["status"])
        for status in JobStatus:
            jobs.add_metric([status.value], by_status.get(status.value, 0))
        yield jobs
        yield GaugeMetricFamily("diggan_queue_depth", "Jobs waiting for a worker",
                                value=by_status.get(JobStatus.queued.value, 0))
        yield CounterMetricFamily("diggan_ticks", "Training ticks recorded", value=ticks)
        yield GaugeMetricFamily("diggan_ticks_per_second", "Training ticks recorded over the last minute, per second",
                                value=(recent or 0) / 60.0)
        yield CounterMetricFamily("diggan_checkpoints", "Checkpoints registered", value=checkpoints)
        speed = GaugeMetricFamily("diggan_job_seconds_per_kimg", "Latest tick's seconds per kimg of a running job",
                                  labels=["job_id"])
        beat = GaugeMetricFamily("diggan_worker_heartbeat_age_seconds", "Seconds since a busy worker's heartbeat",
                                 labels=["worker_id"])
        for row in running:
            sec = (row.latest_tick or {}).get("sec_per_kimg")
            if isinstance(sec, (int, float)):
                speed.add_metric([row.id], float(sec))
            if row.worker_id and row.heartbeat_at is not None:
                beat.add_metric([row.worker_id], (now - row.heartbeat_at).total_seconds())
        yield speed
        yield beat
        outbox = GaugeMetricFamily("diggan_webhook_deliveries", "Webhook deliveries per state", labels=["status"])
        for state in ("pending", "delivered", "failed"):
            outbox.add_metric([state], hooks.get(state, 0))
        yield outbox


def install(app: FastAPI) -> None:
    registry = CollectorRegistry()
    Instrumentator(registry=registry, excluded_handlers=["/metrics", "/healthz"]).instrument(app)
    registry.register(DatabaseCollector(app.state.core))  # type: ignore[arg-type]

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        settings = request.app.state.settings
        token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
        if token:
            presented = request.headers.get("authorization", "")
            if not hmac.compare_digest(presented.encode(), f"Bearer {token}".encode()):
                raise HTTPException(401, "send the metrics token: Authorization: Bearer $DIGGAN_METRICS_TOKEN",
                                    headers={"WWW-Authenticate": "Bearer"})
        elif settings.auth_enabled:
            raise HTTPException(403, "metrics are off: set DIGGAN_METRICS_TOKEN and scrape with it")
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
