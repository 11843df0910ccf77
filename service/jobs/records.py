"""A JSON record per job in the object store, plus its tick/snapshot series.

Ownership keeps concurrent writers apart without a database:
- the API writes a record when it creates it, when it cancels a *queued* job, and in the
  stale sweep (only when the worker's heartbeat is stale, i.e. the worker is presumed dead);
- a worker writes it while it holds the lease (its id in `worker_id`, fresh heartbeat).
A cancel request is also a separate marker object, so a worker write that races the API's
status change cannot lose it: the worker checks the marker and re-asserts `cancelling`.
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Callable

from pydantic import BaseModel, Field

from service import keys
from service.storage import ObjectNotFound, ObjectStore


class JobStatus(str, Enum):
    queued = "queued"
    running = "running"
    cancelling = "cancelling"
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"


TERMINAL_STATES = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.canceled})
ACTIVE_STATES = frozenset({JobStatus.queued, JobStatus.running, JobStatus.cancelling})


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Progress(BaseModel):
    kimg: float = 0.0
    total_kimg: float = 0.0
    fraction: float = 0.0
    eta_seconds: float | None = None


class CheckpointInfo(BaseModel):
    name: str
    kimg: float
    sha256: str
    size: int
    created_at: datetime
    metrics: dict[str, float] = Field(default_factory=dict)
    is_best: bool = False
    final: bool = False
    grid: str | None = None  # grid object name beside it


class JobRecord(BaseModel):
    id: str
    tenant: str
    dataset_id: str
    status: JobStatus = JobStatus.queued
    config: dict[str, Any]
    request: dict[str, Any] = Field(default_factory=dict)  # the body as the client sent it
    progress: Progress = Field(default_factory=Progress)
    latest_tick: dict[str, Any] | None = None
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancel_requested_at: datetime | None = None
    heartbeat_at: datetime | None = None
    enqueued_at: datetime | None = None  # None while queued = the broker never got the message (sweep resends)
    worker_id: str | None = None
    attempt: int = 0  # incremented each time a worker takes the job
    device: str | None = None
    # Reproducibility: `config` above is the full resolved TrainConfig (seed included); these say what
    # trained it. Set by the worker at each attempt (project, torch, numpy, python, device versions).
    versions: dict[str, Any] = Field(default_factory=dict)
    dataset_sha256: str | None = None  # of the prepared dataset the worker trained on
    checkpoints: list[CheckpointInfo] = Field(default_factory=list)
    latest_checkpoint: str | None = None
    best_checkpoint: str | None = None
    resumes: list[dict[str, Any]] = Field(default_factory=list)  # {attempt, kimg, at}: evidence of resume
    init_from: dict[str, Any] | None = None  # pretrained start, resolved at creation (service/models/sources.py)
    idempotency_key_hash: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATES

    def checkpoint(self, ref: str) -> CheckpointInfo | None:
        """`latest`, `best` (falls back to latest when no metric chose one) or a checkpoint name."""
        name = {"latest": self.latest_checkpoint, "best": self.best_checkpoint or self.latest_checkpoint}.get(ref, ref)
        return next((c for c in self.checkpoints if c.name == name), None)

    def heartbeat_age(self, now: datetime | None = None) -> float | None:
        if self.heartbeat_at is None:
            return None
        return ((now or utcnow()) - self.heartbeat_at).total_seconds()


class JobRepo:
    """Read/write job records, series, cancel markers and the active-jobs index."""

    def __init__(self, store: ObjectStore):
        self.store = store
        self._lock = threading.Lock()  # serialises read-modify-write within one process

    # --- records
    def get(self, tenant: str, job_id: str) -> JobRecord:
        """Raises ObjectNotFound."""
        return JobRecord.model_validate_json(self.store.get_bytes(keys.job_record(tenant, job_id)))

    def find(self, tenant: str, job_id: str) -> JobRecord | None:
        try:
            return self.get(tenant, job_id)
        except ObjectNotFound:
            return None

    def put(self, rec: JobRecord) -> JobRecord:
        rec.updated_at = utcnow()
        self.store.put_bytes(keys.job_record(rec.tenant, rec.id), rec.model_dump_json().encode(), "application/json")
        if rec.terminal:
            self.store.delete(keys.active_job(rec.tenant, rec.id))
        return rec

    def create(self, rec: JobRecord) -> JobRecord:
        # Index first: a record without an index entry could escape the stale sweep.
        self.store.put_bytes(keys.active_job(rec.tenant, rec.id), rec.dataset_id.encode())
        return self.put(rec)

    def update(self, tenant: str, job_id: str, fn: Callable[[JobRecord], Any]) -> JobRecord:
        """Read the freshest record, apply `fn` (mutates it; returning False skips the write), write it."""
        with self._lock:
            rec = self.get(tenant, job_id)
            if fn(rec) is False:
                return rec
            return self.put(rec)

    def delete(self, tenant: str, job_id: str) -> None:
        self.store.delete(keys.job_record(tenant, job_id))
        self.store.delete(keys.active_job(tenant, job_id))

    def list(
        self, tenant: str, status: JobStatus | None = None, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[JobRecord], str | None]:
        """Newest first. `cursor` is the last id of the previous page; returns (page, next_cursor)."""
        prefix = keys.job_records_prefix(tenant)
        ids = [o.key[len(prefix) : -len(".json")] for o in self.store.list(prefix) if o.key.endswith(".json")]
        ids.sort(reverse=True)  # ids are time-sortable
        if cursor:
            ids = [i for i in ids if i < cursor]
        page: list[JobRecord] = []
        for job_id in ids:
            rec = self.find(tenant, job_id)
            if rec is None or (status is not None and rec.status != status):
                continue
            page.append(rec)
            if len(page) == limit:
                more = job_id != ids[-1]
                return page, (job_id if more else None)
        return page, None

    def active(self) -> list[tuple[str, str, datetime]]:
        """(tenant, job_id, index entry time) of every unfinished job, across tenants."""
        out = []
        for info in self.store.list(keys.ACTIVE_PREFIX):
            parts = info.key[len(keys.ACTIVE_PREFIX) :].split("/")
            if len(parts) == 2:
                out.append((parts[0], parts[1], info.last_modified))
        return out

    def drop_active(self, tenant: str, job_id: str) -> None:
        self.store.delete(keys.active_job(tenant, job_id))

    def active_for_dataset(self, tenant: str, dataset_id: str) -> list[str]:
        prefix = f"{keys.ACTIVE_PREFIX}{tenant}/"
        out = []
        for info in self.store.list(prefix):
            try:
                if self.store.get_bytes(info.key).decode() == dataset_id:
                    out.append(info.key[len(prefix) :])
            except ObjectNotFound:
                continue
        return out

    # --- cancel marker
    def request_cancel(self, tenant: str, job_id: str) -> None:
        self.store.put_bytes(keys.job_cancel_marker(tenant, job_id), utcnow().isoformat().encode())

    def cancel_requested(self, tenant: str, job_id: str) -> bool:
        return self.store.exists(keys.job_cancel_marker(tenant, job_id))

    # --- series: {"ticks": [...], "snapshots": [...]}, rewritten whole (object stores cannot append)
    def get_series(self, tenant: str, job_id: str) -> dict[str, list[dict[str, Any]]]:
        try:
            data = self.store.get_json(keys.job_series(tenant, job_id))
        except ObjectNotFound:
            data = {}
        return {"ticks": list(data.get("ticks", [])), "snapshots": list(data.get("snapshots", []))}

    def put_series(self, tenant: str, job_id: str, series: dict[str, list[dict[str, Any]]]) -> None:
        self.store.put_json(keys.job_series(tenant, job_id), series)
