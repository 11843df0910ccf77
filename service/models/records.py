"""A JSON record per uploaded model; published last, after its weights are stored."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, Field

from service import keys
from service.storage import ObjectNotFound, ObjectStore


class ModelRecord(BaseModel):
    id: str
    tenant: str
    name: str
    kind: str  # "nvlabs-pkl" | "checkpoint": what was uploaded
    resolution: int
    network: dict[str, Any]  # gan_core NetworkConfig as a dict; jobs started from this model use it
    has_discriminator: bool = True
    notes: list[str] = Field(default_factory=list)  # settings of the upload that are ignored
    sha256: str  # of the stored weights (our checkpoint format), verified when a worker loads them
    size_bytes: int = 0  # stored weights
    original_bytes: int = 0  # the upload as sent (not kept)
    original_sha256: str = ""
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))


class ModelRepo:
    def __init__(self, store: ObjectStore):
        self.store = store

    def get(self, tenant: str, model_id: str) -> ModelRecord:
        """Raises ObjectNotFound."""
        return ModelRecord.model_validate_json(self.store.get_bytes(keys.model_record(tenant, model_id)))

    def find(self, tenant: str, model_id: str) -> ModelRecord | None:
        try:
            return self.get(tenant, model_id)
        except ObjectNotFound:
            return None

    def publish(self, rec: ModelRecord) -> None:
        self.store.put_bytes(keys.model_record(rec.tenant, rec.id), rec.model_dump_json().encode(), "application/json")

    def list(self, tenant: str) -> list[ModelRecord]:
        out = []
        for info in reversed(self.store.list(keys.model_records_prefix(tenant))):  # newest first
            try:
                out.append(ModelRecord.model_validate_json(self.store.get_bytes(info.key)))
            except ObjectNotFound:
                continue
        return out

    def delete(self, tenant: str, model_id: str) -> None:
        # Unpublish first, so a half-deleted model is never visible.
        self.store.delete(keys.model_record(tenant, model_id))
        self.store.delete_prefix(keys.model_prefix(tenant, model_id))
