from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gan_core.config import PRESETS
from service.api.schemas.models import InitFrom
from service.core.jobs import CheckpointInfo, JobStatus, Progress


def _known_regularizers() -> dict[str, dict[str, float]]:
    from gan_core.regularizers import REGISTRY

    return {name: dict(getattr(cls, "params", {}) or {}) for name, cls in REGISTRY.items()}


class RegularizerSpec(BaseModel):
    """One regularizer: `name`, optional `weight` and `interval`, and its own parameters (e.g. DigGAN's `alpha`).
    What is left out comes from the preset's entry of the same name, else from the defaults GET /v1/regularizers
    advertises; the job's stored config shows what was used."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"example": {"name": "diggan", "weight": 100, "alpha": 0.5}})

    name: str
    weight: float | None = Field(default=None, ge=0, le=1e6)
    interval: int | None = Field(default=None, ge=1, le=1000)

    @model_validator(mode="after")
    def _known(self) -> RegularizerSpec:
        known = _known_regularizers()
        if self.name not in known:
            raise ValueError(f"unknown regularizer {self.name!r}; choose from {', '.join(sorted(known))}")
        for key, value in self.params.items():
            if key not in known[self.name]:
                allowed = ", ".join(sorted(known[self.name])) or "none"
                raise ValueError(f"regularizer {self.name!r} has no parameter {key!r} (parameters: {allowed})")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1e6 <= value <= 1e6:
                raise ValueError(f"regularizer {self.name!r} parameter {key!r} must be a number in [-1e6, 1e6]")
        return self

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


METADATA_KEY = r"^[A-Za-z0-9_.:-]{1,64}$"


def _check_metadata(v: dict[str, str] | None) -> dict[str, str] | None:
    import re

    if v is None:
        return v
    if len(v) > 16:
        raise ValueError(f"metadata holds at most 16 keys, got {len(v)}")
    for key, value in v.items():
        if not re.match(METADATA_KEY, key):
            raise ValueError(f"metadata key {key[:80]!r} must be 1-64 characters of letters, digits and _.:-")
        if not isinstance(value, str) or len(value) > 512:
            raise ValueError(f"metadata[{key!r}] must be a string of at most 512 characters")
    return v


WebhookEvent = Literal["job.status", "job.checkpoint", "job.metrics"]
WEBHOOK_EVENTS: tuple[WebhookEvent, ...] = ("job.status", "job.checkpoint", "job.metrics")


class WebhookSpec(BaseModel):
    """Where this job's events go (instead of the tenant's default webhook), and which."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=8, max_length=2000)
    events: list[WebhookEvent] = Field(default_factory=lambda: list(WEBHOOK_EVENTS), min_length=1, max_length=3)


class JobCreate(BaseModel):
    """Everything but `dataset_id` defaults from the preset (DigGAN on)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "dataset_id": "ds_0188f0c6a1b2c3d4e5f6a7b8c9",
                "preset": "cpu-tiny",
                "kimg": 1.0,
                "seed": 0,
                "augment": "ada",
                "regularizers": [{"name": "diggan", "weight": 100, "alpha": 0.5}, {"name": "r1", "weight": 1}],
                "snapshot_kimg": 0.5,
            }
        },
    )

    dataset_id: str = Field(min_length=1, max_length=64)
    preset: str | None = Field(default=None, description=f"one of {', '.join(PRESETS)}")
    arch: Literal["stylegan2", "sngan", "biggan"] | None = Field(
        default=None, description="backbone. Without `preset` it picks that backbone's preset (sngan: sngan-32, "
        "biggan: biggan-32, stylegan2: the server default); with `preset` it must be the preset's. biggan is "
        "class-conditional: upload the dataset with class_folders (an unlabelled set trains it unconditionally)")
    kimg: float | None = Field(default=None, gt=0, description="training length, thousands of real images shown")
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    augment: Literal["ada", "diffaugment", "none"] | None = None
    regularizers: list[RegularizerSpec] | None = Field(default=None, max_length=8)
    snapshot_kimg: float | None = Field(default=None, gt=0, le=1e5)
    tick_kimg: float | None = Field(default=None, gt=0, le=1e5)
    batch_size: int | None = Field(default=None, ge=1, le=256)
    gpus: int | None = Field(default=None, ge=1, le=64, description="GPUs (processes) that share each minibatch: "
                             "batch_size must be a multiple; at most the server's DIGGAN_MAX_JOB_GPUS. Default 1")
    batch_gpu: int | None = Field(default=None, ge=1, le=256, description="images one GPU runs at a time; less than "
                                  "batch_size / gpus accumulates gradients over several passes (GPUs with little "
                                  "memory; NVlabs --batch-gpu). Default: batch_size / gpus")
    # Learning rates (the preset's by default). Bounded only loosely (finite, positive, <= 1e9): a run
    # that diverges is caught at the tick (one rollback with halved rates, then a clear failure).
    g_lr: float | None = Field(default=None, gt=0, le=1e9, description="generator learning rate")
    d_lr: float | None = Field(default=None, gt=0, le=1e9, description="discriminator learning rate")
    metrics: list[Literal["fid", "kid"]] | None = Field(
        default=None, max_length=2, description="computed at snapshots; the first one selects the `best` checkpoint")
    metrics_every: int | None = Field(default=None, ge=1, le=1000, description="compute metrics every k snapshots")
    metrics_num_gen: int | None = Field(default=None, ge=16, le=50_000, description="generated images per metric")
    init_from: InitFrom | None = Field(
        default=None, description='start from pretrained weights: {"model": MODEL_ID} (POST /v1/models) or '
        '{"job": JOB_ID, "checkpoint": "latest"}; the network config is then the pretrained one')
    freeze_d_layers: int | None = Field(
        default=None, ge=0, le=64, description="Freeze-D (Mo et al. 2020; NVlabs train.py --freezed): keep the "
        "discriminator's first N layers from the image side fixed while fine-tuning. Needs `init_from` (frozen "
        "random layers would never learn) and a stylegan2 network; at most its number of D layers (NVlabs "
        "numbering; the ADA paper uses 10 at 256x256). Default 0: off")
    resolution: int | None = Field(default=None, ge=32, le=1024, description="training resolution, a power of two "
                                   "(default: the preset's, or the pretrained model's with init_from, which it must "
                                   "then equal); images are resized to it")
    name: str | None = Field(default=None, min_length=1, max_length=200, description="your name for the job; "
                             "GET /v1/jobs?name=... finds it")
    metadata: dict[str, str] | None = Field(default=None, description="your own string map (at most 16 keys); "
                                            "GET /v1/jobs?metadata[key]=value filters on it")
    webhook: WebhookSpec | None = Field(default=None, description="where to send this job's events (signed, "
                                        "retried); default: your tenant's webhook (PUT /v1/webhooks)")

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        return _check_metadata(v)

    @field_validator("resolution")
    @classmethod
    def _power_of_two(cls, v: int | None) -> int | None:
        if v is not None and v & (v - 1):
            raise ValueError(f"resolution must be a power of two in [32, 1024], got {v}")
        return v

    @field_validator("preset")
    @classmethod
    def _preset(cls, v: str | None) -> str | None:
        if v is not None and v not in PRESETS:
            raise ValueError(f"unknown preset {v!r}; choose one of {', '.join(PRESETS)}")
        return v

    @field_validator("regularizers")
    @classmethod
    def _unique(cls, v: list[RegularizerSpec] | None) -> list[RegularizerSpec] | None:
        names = [r.name for r in v or []]
        if len(names) != len(set(names)):
            raise ValueError("each regularizer may appear once")
        return v


class Job(BaseModel):
    id: str
    object: Literal["job"] = "job"
    name: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    webhook: dict[str, Any] | None = Field(default=None, description="this job's own webhook, if it named one")
    dataset_id: str
    status: JobStatus
    config: dict[str, Any] = Field(description="the full resolved training config (preset + request; seed included)")
    request: dict[str, Any] = Field(default_factory=dict, description="the body of POST /v1/jobs as sent")
    versions: dict[str, Any] = Field(default_factory=dict, description="software that trained it (diggan_service, "
                                     "gan_core, torch, numpy, python, device); set when a worker starts the job")
    dataset_sha256: str | None = Field(default=None, description="SHA-256 of the prepared dataset trained on")
    progress: Progress
    latest_tick: dict[str, Any] | None = None
    error: str | None = None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancel_requested_at: datetime | None = None
    heartbeat_at: datetime | None = None
    enqueued_at: datetime | None = Field(default=None, description="when the queue last accepted a message for it "
                                         "(null while queued: not sent yet; the service sends it when it can)")
    attempt: int = Field(default=0, description="how many times a worker has taken the job (its lease's fencing token)")
    worker_id: str | None = Field(default=None, description="the worker holding it now (host-pid-id)")
    device: str | None = None
    latest_checkpoint: str | None = None
    best_checkpoint: str | None = None
    resumes: list[dict[str, Any]] = []
    init_from: dict[str, Any] | None = Field(default=None, description="the pretrained weights it started from "
                                             "(model or job checkpoint, with their SHA-256)")


class JobList(BaseModel):
    data: list[Job]
    next_cursor: str | None = None
    has_more: bool = False


class Metrics(BaseModel):
    job_id: str
    ticks: list[dict[str, Any]]
    snapshots: list[dict[str, Any]]


class CheckpointList(BaseModel):
    data: list[CheckpointInfo]


class Estimate(BaseModel):
    sec_per_kimg: float = Field(description="measured on a training worker's device with this job's setup")
    total_seconds: float = Field(description="sec_per_kimg x kimg, plus the snapshot metrics' share")
    kimg: float
    device: str
    measured_at: datetime
    calibrated_now: bool = Field(description="true: measured for this request; false: a measurement of the same "
                                 "setup from the last week")


class JobEstimate(BaseModel):
    """What POST /v1/jobs would create, checked (config, quotas), and how long it would train."""

    object: Literal["job.estimate"] = "job.estimate"
    config: dict[str, Any]
    charged_kimg: float = Field(description="what it would cost against your kimg quota")
    estimate: Estimate
