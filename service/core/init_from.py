"""A job's `init_from`: the stored weights a new job starts from, resolved once at creation.

The API resolves `{"model": ID}` or `{"job": ID, "checkpoint": ...}` to a concrete object key and its
SHA-256 and keeps that in the job row, so a source job that keeps training cannot change what this job
starts from. The worker fetches exactly that object, and gan_core verifies the hash before loading it
(torch.load(weights_only=True)).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service.core import object_keys
from service.core.storage import ObjectStore


def init_object_key(tenant: str, init: dict[str, Any]) -> str:
    if init.get("object_key"):
        return str(init["object_key"])
    if init.get("model"):
        return object_keys.model_weights(tenant, init["model"])
    raise ValueError(f"init_from without an object key: {init}")


def describe(init: dict[str, Any]) -> str:
    if init.get("model"):
        return f"model {init['model']}"
    return f"job {init['job']} checkpoint {init['checkpoint']}"


def fetch_init_weights(store: ObjectStore, tenant: str, init: dict[str, Any], dest_dir: Path) -> Path:
    """Download the weights a job starts from, with a .sha256 sidecar that gan_core verifies on load.
    Raises ObjectNotFound when they were deleted meanwhile."""
    dest = dest_dir / "init.pt"
    if not dest.is_file():
        dest_dir.mkdir(parents=True, exist_ok=True)
        store.get_file(init_object_key(tenant, init), dest)
        dest.with_name(dest.name + ".sha256").write_text(str(init["sha256"]) + "\n")
    return dest
