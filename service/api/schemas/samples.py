from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class SampleRequest(BaseModel):
    """`seeds` wins over `n` (n = len(seeds)); without seeds, seeds are 0..n-1."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(default=16, ge=1)  # upper bound is a setting, checked in the route
    seeds: list[Annotated[int, Field(ge=0, le=2**32 - 1)]] | None = Field(default=None, min_length=1, max_length=1024)
    psi: float = 0.7  # range is a setting, checked in the route
    checkpoint: str = Field(default="latest", min_length=1, max_length=64, description="'latest', 'best' or a name")
    format: Literal["grid", "zip", "json"] = "grid"
    nrow: int | None = Field(default=None, ge=1, le=64, description="grid columns (default: near-square)")
    class_index: int | None = Field(
        default=None, ge=0, le=1_000_000,
        description="class-conditional jobs (biggan): the class of every sample, 0..num_classes-1 (the dataset's "
                    "class_names order); default: each seed's own class")


class SampleImage(BaseModel):
    index: int
    seed: int
    url: str


class SampleSet(BaseModel):
    id: str
    job_id: str
    checkpoint: str
    psi: float
    created_at: datetime
    images: list[SampleImage]
    class_index: int | None = None
