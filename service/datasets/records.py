from __future__ import annotations

from datetime import datetime, timezone

from pydantic import BaseModel, Field

from service import keys
from service.storage import ObjectNotFound, ObjectStore


class DatasetRecord(BaseModel):
    id: str
    tenant: str
    name: str
    num_images: int
    resolution: int
    warnings: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    size_bytes: int = 0
    original_bytes: int = 0
    source: str = "zip"  # "zip" | "files"
    num_classes: int = 0  # > 0 when uploaded with class_folders: labels for class-conditional jobs (biggan)
    class_names: list[str] = Field(default_factory=list)  # label k = class_names[k] (sorted folder names)


class DatasetRepo:
    def __init__(self, store: ObjectStore):
        self.store = store

    def get(self, tenant: str, dataset_id: str) -> DatasetRecord:
        """Raises ObjectNotFound."""
        return DatasetRecord.model_validate_json(self.store.get_bytes(keys.dataset_record(tenant, dataset_id)))

    def find(self, tenant: str, dataset_id: str) -> DatasetRecord | None:
        try:
            return self.get(tenant, dataset_id)
        except ObjectNotFound:
            return None

    def publish(self, rec: DatasetRecord) -> None:
        # Written last: a dataset exists for the API only once all its objects are stored.
        self.store.put_bytes(keys.dataset_record(rec.tenant, rec.id), rec.model_dump_json().encode(), "application/json")

    def list(self, tenant: str) -> list[DatasetRecord]:
        prefix = keys.dataset_records_prefix(tenant)
        out = []
        for info in reversed(self.store.list(prefix)):  # newest first (time-sortable ids)
            try:
                out.append(DatasetRecord.model_validate_json(self.store.get_bytes(info.key)))
            except ObjectNotFound:
                continue
        return out

    def delete(self, tenant: str, dataset_id: str) -> None:
        # Unpublish first, so a half-deleted dataset is never visible.
        self.store.delete(keys.dataset_record(tenant, dataset_id))
        self.store.delete_prefix(keys.dataset_prefix(tenant, dataset_id))
