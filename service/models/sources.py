"""A job's `init_from`: which stored weights a new job starts from.

At job creation (API) the request's `{"model": ID}` or `{"job": ID, "checkpoint": "latest"}` is
resolved once, to a concrete object and its SHA-256, and kept in the job record, so a source job
that keeps training cannot change what this job starts from. The worker fetches exactly that
object and gan_core verifies the hash before loading it (torch.load(weights_only=True)).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import HTTPException

from service import keys
from service.ids import is_valid_id
from service.storage import ObjectStore


def resolve_init_from(spec: Any, tenant: str, models: Any, jobs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(network config dict, the record's `init_from`) for a request's InitFrom; 404/409 when unusable."""
    if spec.model is not None:
        rec = models.find(tenant, spec.model) if is_valid_id(spec.model, "model") else None
        if rec is None:
            raise HTTPException(404, f"no model {spec.model!r}; upload one with POST /v1/models, list yours with "
                                     "GET /v1/models")
        return dict(rec.network), {"model": rec.id, "kind": rec.kind, "sha256": rec.sha256}
    job = jobs.find(tenant, spec.job) if is_valid_id(spec.job, "job") else None
    if job is None:
        raise HTTPException(404, f"no job {spec.job!r} to start from; list yours with GET /v1/jobs")
    ref = spec.checkpoint or "latest"
    ckpt = job.checkpoint(ref)
    if ckpt is None:
        raise HTTPException(409, f"job {job.id} has no checkpoint {ref!r} yet; wait for its first snapshot or "
                                 f"pick one from GET /v1/jobs/{job.id}/checkpoints")
    return dict(job.config["network"]), {"job": job.id, "checkpoint": ckpt.name, "kimg": ckpt.kimg,
                                         "sha256": ckpt.sha256}


def init_object_key(tenant: str, init: dict[str, Any]) -> str:
    if init.get("model"):
        return keys.model_weights(tenant, init["model"])
    return keys.job_checkpoint(tenant, init["job"], init["checkpoint"])


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

