from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class Dataset(BaseModel):
    id: str
    name: str
    num_images: int
    resolution: int
    warnings: list[str] = []
    created_at: datetime
    size_bytes: int = 0  # the prepared dataset's stored size
    num_classes: int = Field(default=0, description="classes from the upload's class folders (0 = unlabelled)")
    class_names: list[str] = Field(default_factory=list, description="class index k = class_names[k]")


class DatasetList(BaseModel):
    data: list[Dataset]
    next_cursor: str | None = None
    has_more: bool = False
