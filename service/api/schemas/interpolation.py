from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class InterpolationRequest(BaseModel):
    """A walk in W space from `seed_a` to `seed_b`, both included, as an animated GIF."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"seed_a": 0, "seed_b": 7, "steps": 16}})

    seed_a: int = Field(ge=0, le=2**32 - 1)
    seed_b: int = Field(ge=0, le=2**32 - 1)
    steps: int = Field(default=16, ge=2, description="frames, both ends included (upper bound: the server's max_samples)")
    psi: float = 0.7  # range is a setting, checked in the route
    checkpoint: str = Field(default="latest", min_length=1, max_length=64, description="'latest', 'best' or a name")
    duration_ms: int = Field(default=80, ge=20, le=2000, description="how long each frame shows")
    boomerang: bool = Field(default=True, description="play back to seed_a, so the loop has no jump")
    class_index: int | None = Field(
        default=None, ge=0, le=1_000_000,
        description="class-conditional jobs (biggan): the class along the whole walk; default: seed_a's own class")
