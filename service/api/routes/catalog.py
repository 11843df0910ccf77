"""What a job can ask for: the registered D regularizers and the presets, with their defaults.

Read-only and the same for every tenant, so clients can build forms from it; it goes through
the usual key check and rate limit like every /v1 route.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from gan_core.config import PRESETS, config_to_dict
from gan_core.regularizers import describe_regularizers
from service.api.deps import SettingsDep, get_principal
from service.api.schemas.common import ERROR_RESPONSES

router = APIRouter(prefix="/v1", tags=["catalog"], responses=ERROR_RESPONSES, dependencies=[Depends(get_principal)])


class RegularizerInfo(BaseModel):
    name: str = Field(description="the value for `regularizers[].name` in a job")
    description: str
    params: dict[str, float] = Field(description="its own parameters with their defaults (top-level keys of the spec)")
    default_weight: float | None = Field(description="a sensible starting weight")
    default_interval: int | None = Field(description="suggested lazy interval (1 = every minibatch)")


class RegularizerList(BaseModel):
    data: list[RegularizerInfo]


class PresetList(BaseModel):
    default: str = Field(description="the preset a job gets when it names none")
    data: dict[str, dict[str, Any]] = Field(description="preset name -> its full training config")


@router.get("/regularizers", response_model=RegularizerList,
            summary="Discriminator regularizers a job can combine, with their parameters and defaults")
def list_regularizers() -> RegularizerList:
    return RegularizerList(data=[RegularizerInfo(**d) for d in describe_regularizers()])


@router.get("/presets", response_model=PresetList, summary="Training presets and the configs they resolve to")
def list_presets(settings: SettingsDep) -> PresetList:
    presets = {name: config_to_dict(cfg) for name, cfg in PRESETS.items()}
    return PresetList(default=settings.default_preset, data=presets)
