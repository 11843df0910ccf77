"""Style mixing and SeFa edit directions (docs/editing.md)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from service.api.schemas.latents import REF_DESCRIPTION, LatentRef

# Layer indices: "0-6", "0,2,4" or a list; checked against the generator (0..num_ws-1) when it is loaded.
Layers = str | list[Annotated[int, Field(ge=0, le=63)]]
STRENGTH = 1000.0  # |strength| bound: far past any useful edit (the SeFa authors sweep +-3; directions are unit)


class Direction(BaseModel):
    index: int
    eigenvalue: float
    vector: list[float] = Field(description="unit vector in W, w_dim entries")


class Directions(BaseModel):
    """SeFa (Shen & Zhou 2021): the directions in W that change the chosen layers' styles most."""

    job_id: str
    checkpoint: str
    layers: list[int] = Field(description="the style layers they were computed from, and are applied to")
    num_ws: int
    w_dim: int
    directions: list[Direction]


class _EditBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    direction: int = Field(ge=0, le=4095, description="SeFa direction index (0: the largest eigenvalue)")
    layers: Layers | None = Field(default=None, description="style layers to factorise and edit, e.g. \"0-3\" "
                                  "(default: all but the last ToRGB, as the SeFa authors)")
    checkpoint: str = Field(default="latest", min_length=1, max_length=64)


class EditStripRequest(_EditBase):
    """A latent (or seed) rendered along one direction at each strength: a one-row PNG strip."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"source": 5, "direction": 0,
                                                                             "strengths": [-3, -1.5, 0, 1.5, 3]}})

    source: LatentRef = Field(description=REF_DESCRIPTION)
    strengths: list[Annotated[float, Field(ge=-STRENGTH, le=STRENGTH)]] = Field(
        default=[-3, -1.5, 0, 1.5, 3], min_length=1, max_length=16, description="W units (directions are unit)")
    psi: float = Field(default=1.0, description="truncation of the source before the edit")


class EditImageRequest(_EditBase):
    """One edited image (the dashboard's slider): R x R PNG."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"source": 5, "direction": 0,
                                                                             "strength": 2.0}})

    source: LatentRef = Field(description=REF_DESCRIPTION)
    strength: float = Field(ge=-STRENGTH, le=STRENGTH)
    psi: float = Field(default=1.0, description="truncation of the source before the edit")


class LatentEditRequest(_EditBase):
    """Apply a direction to a saved latent and save the result as a new (W+) latent."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"direction": 0, "strength": 2.0}})

    strength: float = Field(ge=-STRENGTH, le=STRENGTH)
    name: str | None = Field(default=None, min_length=1, max_length=200)


class MixRequest(BaseModel):
    """One style-mixed image: `row`'s latent with the `styles` layers taken from `col` (NVlabs style_mixing.py)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"row": 85, "col": 821, "styles": "0-3"}})

    row: LatentRef = Field(description=REF_DESCRIPTION + "; gives every layer but `styles`")
    col: LatentRef = Field(description=REF_DESCRIPTION + "; gives the `styles` layers")
    styles: Layers = Field(default="0-6", description="layers from `col` (NVlabs' default 0-6: coarse = pose and "
                           "shape; high indices = colour and texture)")
    psi: float = Field(default=1.0, description="truncation of both sources before mixing (NVlabs' default 1)")
    checkpoint: str = Field(default="latest", min_length=1, max_length=64)


class MixGridRequest(BaseModel):
    """The StyleGAN papers' figure: column sources on top, row sources on the left, mixed cells inside."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"rows": [85, 100, 75],
                                                                             "cols": [55, 821, 1789], "styles": "0-6"}})

    rows: list[LatentRef] = Field(min_length=1, max_length=8, description="seeds and/or latent ids")
    cols: list[LatentRef] = Field(min_length=1, max_length=8, description="seeds and/or latent ids")
    styles: Layers = Field(default="0-6")
    psi: float = Field(default=1.0)
    checkpoint: str = Field(default="latest", min_length=1, max_length=64)
