"""Resolve a job request's `init_from` once, at creation, to a concrete object and its SHA-256
(service/core/init_from.py says why and how the worker uses it)."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException

from service.core.ids import is_valid_id
from service.core.jobs import JobRepo
from service.core.object_keys import model_weights
from service.core.uploads import ModelRepo


def resolve_init_from(spec: Any, tenant: str, models: ModelRepo, jobs: JobRepo) -> tuple[dict[str, Any], dict[str, Any]]:
    """(network config dict, the job's `init_from`) for a request's InitFrom; 404/409 when unusable."""
    if spec.model is not None:
        rec = models.find(tenant, spec.model) if is_valid_id(spec.model, "model") else None
        if rec is None:
            raise HTTPException(404, f"no model {spec.model!r}; upload one with POST /v1/models, list yours with "
                                     "GET /v1/models")
        return dict(rec.network), {"model": rec.id, "kind": rec.kind, "sha256": rec.sha256,
                                   "object_key": model_weights(tenant, rec.id)}
    job = jobs.find(tenant, spec.job) if is_valid_id(spec.job, "job") else None
    if job is None:
        raise HTTPException(404, f"no job {spec.job!r} to start from; list yours with GET /v1/jobs")
    ref = spec.checkpoint or "latest"
    ckpt = jobs.checkpoint(job, ref)
    if ckpt is None:
        raise HTTPException(409, f"job {job.id} has no checkpoint {ref!r} yet; wait for its first snapshot or "
                                 f"pick one from GET /v1/jobs/{job.id}/checkpoints")
    return dict(job.config["network"]), {"job": job.id, "checkpoint": ckpt.name, "kimg": ckpt.kimg,
                                         "sha256": ckpt.sha256, "object_key": ckpt.object_key}
