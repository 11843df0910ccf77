"""Latents: saved W / W+ vectors of a job's generator, and walks between them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

# A latent as a request names it: a seed (an int: its untruncated w, NVlabs' seed -> z -> w) or a saved
# latent's id (a string, "lat_..."). The request's `psi` then truncates it toward the mean w.
# StrictInt: JSON true/false are not seeds.
LatentRef = StrictInt | str
REF_DESCRIPTION = "a seed (integer) or a saved latent's id (\"lat_...\")"


class LatentCreate(BaseModel):
    """Save the W latent of a seed, truncated by psi: rendering it with psi 1 gives the seed's sample at `psi`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"seed": 7, "psi": 0.7, "name": "smile"}})

    seed: int = Field(ge=0, le=2**32 - 1)
    psi: float = Field(default=0.7, description="truncation toward the mean w (the samples endpoint's default)")
    checkpoint: str = Field(default="latest", min_length=1, max_length=64, description="'latest', 'best' or a name")
    name: str | None = Field(default=None, min_length=1, max_length=200)


class Latent(BaseModel):
    id: str
    object: Literal["latent"] = "latent"
    job_id: str
    name: str | None = None
    kind: Literal["w", "w+"] = Field(description="w: one vector for every layer, shape [1, w_dim]; w+: one per "
                                     "layer, [1, num_ws, w_dim]")
    shape: list[int]
    source: dict[str, Any] = Field(description="where it came from: {type: seed|projection|edit, ...}")
    checkpoint: str = Field(description="the checkpoint it was made with (any checkpoint of the job renders it)")
    checkpoint_sha256: str
    size: int
    created_at: datetime | None = None
    npy_url: str = Field(description="float32 .npy download (numpy.load)")
    image_url: str = Field(description="the latent rendered (GET, ?psi=&checkpoint=)")


class LatentList(BaseModel):
    data: list[Latent]
    next_cursor: str | None = None
    has_more: bool = False


class LatentInterpolationRequest(BaseModel):
    """A linear walk in W (or W+) from `a` to `b`, both included, as an animated GIF."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"a": "lat_0188f0c6a1b2c3d4e5f6a7b8c9",
                                                                             "b": 7, "steps": 16}})

    a: LatentRef = Field(description=REF_DESCRIPTION)
    b: LatentRef = Field(description=REF_DESCRIPTION)
    steps: int = Field(default=16, ge=2, description="frames, both ends included (at most the server's max_samples)")
    psi: float = Field(default=1.0, description="truncation of both ends (1: latents as saved)")
    checkpoint: str = Field(default="latest", min_length=1, max_length=64)
    duration_ms: int = Field(default=80, ge=20, le=2000)
    boomerang: bool = Field(default=True, description="play back to `a`, so the loop has no jump")
