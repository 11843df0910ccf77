"""The system of record: every dataset, job, checkpoint, metrics tick, sample set, model, API key,
idempotency key and stored blob is a row here (PostgreSQL deployed, SQLite embedded).

The object store keeps only bytes; `blobs` says which tenant owns which object and how large it is,
so storage quotas are one indexed SUM and deleting a resource knows exactly what to remove.

Changing a table means a new Alembic revision under service/core/db/migrations/versions/.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from service.core.db.types import JSONType, UTCDateTime, db_now

# Named constraints, so Alembic migrations can refer to them on both databases.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID = String(40)  # "<prefix>_<26 hex>" (service/core/ids.py)
TENANT = String(63)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _created() -> Mapped[datetime]:
    return mapped_column(UTCDateTime(), server_default=db_now(), nullable=False)


class Tenant(Base):
    """One row per tenant: the row a quota check locks, so checks and inserts are serialised per tenant."""

    __tablename__ = "tenants"
    name: Mapped[str] = mapped_column(TENANT, primary_key=True)
    created_at: Mapped[datetime] = _created()


class TenantWebhook(Base):
    """A tenant's default webhook (revision 0002): where job events go when a job names no URL of its own,
    and the secret every delivery to this tenant is signed with (Standard Webhooks, `whsec_...`)."""

    __tablename__ = "tenant_webhooks"
    tenant: Mapped[str] = mapped_column(TENANT, primary_key=True)
    url: Mapped[str | None] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    secret: Mapped[str] = mapped_column(String(100), nullable=False)
    updated_at: Mapped[datetime] = _created()


class WebhookDelivery(Base):
    """An outbox row per event and URL, written in the transaction of the change it reports; a dispatcher
    delivers them in order per job, retries with backoff, and records what happened (revision 0002)."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    msg_id: Mapped[str] = mapped_column(String(40), nullable=False, unique=True)  # the webhook-id header
    tenant: Mapped[str] = mapped_column(TENANT, nullable=False)
    job_id: Mapped[str] = mapped_column(ID, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    url: Mapped[str] = mapped_column(String(2000), nullable=False)
    event: Mapped[str] = mapped_column(String(40), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")  # pending|delivered|failed
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = _created()
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = _created()
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
                      Index("ix_webhook_deliveries_job", "job_id", "id"))


class Calibration(Base):
    """Measured seconds per kimg of a training setup on a worker's device (revision 0002), for the time
    estimate of POST /v1/jobs?dry_run=true."""

    __tablename__ = "calibrations"
    signature: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of what decides the speed
    device: Mapped[str] = mapped_column(String(80), primary_key=True)
    sec_per_kimg: Mapped[float] = mapped_column(Float, nullable=False)
    measured_at: Mapped[datetime] = _created()


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    tenant: Mapped[str] = mapped_column(TENANT, nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    salt: Mapped[str] = mapped_column(String(64), nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    quotas: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    created_at: Mapped[datetime] = _created()
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Dataset(Base):
    __tablename__ = "datasets"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    tenant: Mapped[str] = mapped_column(TENANT, nullable=False)
    # "uploading" until every object is stored, then "ready"; a crashed upload stays "uploading"
    # and the sweep removes it (and its objects) after settings.upload_orphan_after_s.
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="uploading")
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    num_images: Mapped[int] = mapped_column(Integer, nullable=False)
    resolution: Mapped[int] = mapped_column(Integer, nullable=False)
    warnings: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    original_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    source: Mapped[str] = mapped_column(String(16), nullable=False, default="zip")
    num_classes: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    class_names: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    created_at: Mapped[datetime] = _created()

    __table_args__ = (Index("ix_datasets_tenant_id", "tenant", "id"),)


class Model(Base):
    """An uploaded pretrained network, stored converted to our checkpoint format."""

    __tablename__ = "models"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    tenant: Mapped[str] = mapped_column(TENANT, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="uploading")
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    resolution: Mapped[int] = mapped_column(Integer, nullable=False)
    network: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    has_discriminator: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    notes: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    original_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    original_sha256: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    created_at: Mapped[datetime] = _created()

    __table_args__ = (Index("ix_models_tenant_id", "tenant", "id"),)


class Job(Base):
    """A training job. Its state machine is enforced by conditional UPDATEs (service/core/jobs.py), and a
    worker's every write is fenced by `attempt` (service/core/lease.py)."""

    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    tenant: Mapped[str] = mapped_column(TENANT, nullable=False)
    dataset_id: Mapped[str] = mapped_column(ID, nullable=False)  # no FK: finished jobs outlive their dataset
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="queued")
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    request: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    kimg: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)  # progress
    total_kimg: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    # What the job costs against the tenant's kimg quota: training kimg plus the images its snapshot
    # metrics generate (in thousands); a finished job is charged in proportion to the kimg it trained.
    charged_kimg: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    eta_seconds: Mapped[float | None] = mapped_column(Float)
    latest_tick: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The outbox: NULL until the broker accepted a message for the current queued spell; the sweep
    # (re)sends queued jobs whose message is missing or old (see settings.resend_queued_after_s).
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    enqueue_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, default=0)  # the lease's fencing token
    device: Mapped[str | None] = mapped_column(String(32))
    versions: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    dataset_sha256: Mapped[str | None] = mapped_column(String(64))
    latest_checkpoint: Mapped[str | None] = mapped_column(String(80))
    best_checkpoint: Mapped[str | None] = mapped_column(String(80))
    resumes: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, nullable=False, default=list)
    init_from: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    idempotency_key_hash: Mapped[str | None] = mapped_column(String(64))
    # The caller's own handles (revision 0002): a name, a small string map, and where to send events.
    name: Mapped[str | None] = mapped_column(String(200))
    meta: Mapped[dict[str, str]] = mapped_column("metadata", JSONType, nullable=False, default=dict)
    webhook: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # {"url", "events"}; None: the tenant's

    __table_args__ = (
        Index("ix_jobs_tenant_name", "tenant", "name"),
        Index("ix_jobs_tenant_id", "tenant", "id"),
        Index("ix_jobs_tenant_status", "tenant", "status"),
        Index("ix_jobs_status", "status"),
        Index("ix_jobs_tenant_dataset", "tenant", "dataset_id"),
    )


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ID, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(String(80), nullable=False)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)  # the lease that wrote it
    object_key: Mapped[str] = mapped_column(String(1024), nullable=False)
    grid_key: Mapped[str | None] = mapped_column(String(1024))
    grid: Mapped[str | None] = mapped_column(String(80))
    kimg: Mapped[float] = mapped_column(Float, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    metrics: Mapped[dict[str, float]] = mapped_column(JSONType, nullable=False, default=dict)
    is_best: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    final: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = _created()

    __table_args__ = (Index("uq_checkpoints_job_name", "job_id", "name", unique=True),)


class Tick(Base):
    """One training tick's stats, appended (never a rewritten series)."""

    __tablename__ = "ticks"
    job_id: Mapped[str] = mapped_column(ID, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    tick: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
    kimg: Mapped[float] = mapped_column(Float, nullable=False)
    stats: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    created_at: Mapped[datetime] = _created()


class SampleSet(Base):
    __tablename__ = "sample_sets"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    tenant: Mapped[str] = mapped_column(TENANT, nullable=False)
    job_id: Mapped[str] = mapped_column(ID, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="uploading")
    checkpoint: Mapped[str] = mapped_column(String(80), nullable=False)
    psi: Mapped[float] = mapped_column(Float, nullable=False)
    class_index: Mapped[int | None] = mapped_column(Integer)
    seeds: Mapped[list[int]] = mapped_column(JSONType, nullable=False)
    object_prefix: Mapped[str] = mapped_column(String(1024), nullable=False)
    created_at: Mapped[datetime] = _created()

    __table_args__ = (Index("ix_sample_sets_job", "job_id", "id"),)


class Blob(Base):
    """An object in the store that a tenant pays for: storage quota = SUM(size) per tenant."""

    __tablename__ = "blobs"
    key: Mapped[str] = mapped_column(String(1024), primary_key=True)
    tenant: Mapped[str] = mapped_column(TENANT, nullable=False, index=True)
    owner_type: Mapped[str] = mapped_column(String(16), nullable=False)  # dataset | model | job | sample_set
    owner_id: Mapped[str] = mapped_column(ID, nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[datetime] = _created()

    __table_args__ = (Index("ix_blobs_owner", "owner_type", "owner_id"),)


class ObjectDeletion(Base):
    """An outbox of store prefixes to remove: written in the transaction that deletes the rows that owned
    them, emptied by the sweep once the objects are gone (so a crash in between leaks nothing)."""

    __tablename__ = "object_deletions"
    prefix: Mapped[str] = mapped_column(String(1024), primary_key=True)
    created_at: Mapped[datetime] = _created()


class IdempotencyKey(Base):
    """POST /v1/jobs replays: unique per tenant, written in the job's own transaction."""

    __tablename__ = "idempotency_keys"
    tenant: Mapped[str] = mapped_column(TENANT, primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    body_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    job_id: Mapped[str] = mapped_column(ID, nullable=False)
    created_at: Mapped[datetime] = _created()


class WorkSlot(Base):
    """Per-tenant limits on work in progress, shared by every API replica: a row per running heavy request,
    open event stream or upload being decoded, with a weight (1, or declared pixels) and an expiry that the
    holder extends while it works (a crashed process' slots expire on their own)."""

    __tablename__ = "work_slots"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(TENANT, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # heavy | events | decode
    weight: Mapped[int] = mapped_column(BigInteger, nullable=False, default=1)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)

    __table_args__ = (Index("ix_work_slots_tenant_kind", "tenant", "kind"),)


class RateBucket(Base):
    """Token buckets for request-rate limits when no Redis is configured (shared by every API process on
    the database). `stamp` is the unix time of the last refill, on the API hosts' clocks."""

    __tablename__ = "rate_buckets"
    bucket: Mapped[str] = mapped_column(String(120), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float, nullable=False)
    stamp: Mapped[float] = mapped_column(Float, nullable=False)


class Projection(Base):
    """A background projection (GAN inversion) of uploaded images into a job checkpoint's W space (revision
    0003). Claimed by a light-queue worker with a conditional UPDATE that increments `attempt`; every worker
    write is fenced by that attempt (service/core/projections.py), and the sweep re-queues or fails one whose
    heartbeat went stale."""

    __tablename__ = "projections"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    tenant: Mapped[str] = mapped_column(TENANT, nullable=False)
    job_id: Mapped[str] = mapped_column(ID, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="queued")
    checkpoint: Mapped[str] = mapped_column(String(80), nullable=False)  # the name, resolved at creation
    checkpoint_key: Mapped[str] = mapped_column(String(1024), nullable=False)
    checkpoint_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)  # steps, w_plus, distance, seed
    # One entry per uploaded image: its target's key and, once projected, its result (distance, latent id...).
    images: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, nullable=False)
    total_steps: Mapped[int] = mapped_column(Integer, nullable=False)
    steps_done: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    distance: Mapped[float | None] = mapped_column(Float)  # the current image's distance at its latest step
    eta_seconds: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    enqueue_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_projections_job", "job_id", "id"),
                      Index("ix_projections_tenant_status", "tenant", "status"),
                      Index("ix_projections_status", "status"))


class Latent(Base):
    """A W or W+ latent of a job's generator, saved from a seed, a projection or an edit (revision 0003);
    its values are a float32 .npy in the store."""

    __tablename__ = "latents"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    tenant: Mapped[str] = mapped_column(TENANT, nullable=False)
    job_id: Mapped[str] = mapped_column(ID, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(8), nullable=False)  # w | w+
    shape: Mapped[list[int]] = mapped_column(JSONType, nullable=False)
    source: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)  # seed | projection | edit
    checkpoint: Mapped[str] = mapped_column(String(80), nullable=False)  # the generator it was made with
    checkpoint_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    object_key: Mapped[str] = mapped_column(String(1024), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[datetime] = _created()

    __table_args__ = (Index("ix_latents_job", "job_id", "id"),)
