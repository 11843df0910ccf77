from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class Dataset(BaseModel):
    id: str
    name: str
    num_images: int
    resolution: int
    warnings: list[str] = []
    created_at: datetime
    size_bytes: int = 0  # the prepared dataset's stored size


class DatasetList(BaseModel):
    data: list[Dataset]
