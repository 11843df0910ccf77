from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Model(BaseModel):
    """An uploaded pretrained model that jobs can start from (`init_from: {"model": id}`)."""

    id: str
    name: str
    kind: str = Field(description="what was uploaded: `nvlabs-pkl` (stylegan2-ada-pytorch) or `checkpoint` (ours)")
    resolution: int
    network: dict[str, Any] = Field(description="the network config every job started from this model uses")
    has_discriminator: bool
    notes: list[str] = Field(default=[], description="settings of the upload that are ignored")
    sha256: str
    size_bytes: int = Field(description="stored size (weights converted to our checkpoint format)")
    original_bytes: int
    created_at: datetime


class ModelList(BaseModel):
    data: list[Model]
    next_cursor: str | None = None
    has_more: bool = False


class InitFrom(BaseModel):
    """Pretrained weights a job starts from: an uploaded model, or another job's checkpoint."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"model": "model_0188f0c6a1b2c3d4e5f6a7b8c9"}})

    model: str | None = Field(default=None, min_length=1, max_length=64, description="a model id (POST /v1/models)")
    job: str | None = Field(default=None, min_length=1, max_length=64, description="a job id of yours")
    checkpoint: str | None = Field(default=None, min_length=1, max_length=64,
                                   description="with `job`: `latest` (default), `best`, or a checkpoint name")

    @model_validator(mode="after")
    def _one_source(self) -> InitFrom:
        if (self.model is None) == (self.job is None):
            raise ValueError('give exactly one of "model" (an uploaded model id) or "job" (a job id)')
        if self.checkpoint is not None and self.job is None:
            raise ValueError('"checkpoint" goes with "job"; a model has one set of weights')
        return self
