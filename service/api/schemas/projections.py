"""Projections: uploaded images projected into a job's W (or W+) space in the background."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from service.core.projections import ProjectionStatus


class ProjectionImage(BaseModel):
    index: int
    filename: str | None = None
    width: int = Field(description="the upload's size before the centre crop and resize")
    height: int
    status: Literal["pending", "done"] = "pending"
    distance: float | None = Field(default=None, description="the chosen distance between reconstruction and "
                                   "target, at the end")
    initial_distance: float | None = None
    pixel_mse: float | None = Field(default=None, description="mean squared error in [0, 1] units")
    steps: int | None = None
    latent_id: str | None = Field(default=None, description="the projected latent, saved (GET .../latents/{id})")
    target_url: str
    reconstruction_url: str | None = None
    progress_gif_url: str | None = None


class ProjectionProgress(BaseModel):
    steps_done: int
    total_steps: int
    fraction: float
    eta_seconds: float | None = None
    distance: float | None = Field(default=None, description="the image being projected: distance at its latest step")


class Projection(BaseModel):
    id: str
    object: Literal["projection"] = "projection"
    job_id: str
    status: ProjectionStatus
    checkpoint: str
    checkpoint_sha256: str
    config: dict[str, Any] = Field(description="steps, w_plus, distance, seed")
    progress: ProjectionProgress
    images: list[ProjectionImage]
    error: str | None = None
    attempt: int = Field(default=0, description="how many times a worker has taken it")
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancel_requested_at: datetime | None = None


class ProjectionList(BaseModel):
    data: list[Projection]
    next_cursor: str | None = None
    has_more: bool = False
