"""Load what a route is about, or answer with a 404/409 that says what exists instead."""

from __future__ import annotations

from fastapi import HTTPException

from service.core.ids import is_valid_id
from service.core.jobs import CheckpointInfo, JobRecord, JobRepo
from service.core.uploads import DatasetRecord, DatasetRepo, ModelRecord, ModelRepo


def load_job(jobs: JobRepo, tenant: str, job_id: str) -> JobRecord:
    rec = jobs.find(tenant, job_id) if is_valid_id(job_id, "job") else None
    if rec is None:
        raise HTTPException(404, f"no job {job_id!r}; list yours with GET /v1/jobs")
    return rec


def load_dataset(repo: DatasetRepo, tenant: str, dataset_id: str) -> DatasetRecord:
    rec = repo.find(tenant, dataset_id) if is_valid_id(dataset_id, "ds") else None
    if rec is None:
        raise HTTPException(404, f"no dataset {dataset_id!r}; list yours with GET /v1/datasets")
    return rec


def load_model(repo: ModelRepo, tenant: str, model_id: str) -> ModelRecord:
    rec = repo.find(tenant, model_id) if is_valid_id(model_id, "model") else None
    if rec is None:
        raise HTTPException(404, f"no model {model_id!r}; list yours with GET /v1/models")
    return rec


def require_checkpoint(jobs: JobRepo, rec: JobRecord, ref: str, none_yet: int = 409) -> CheckpointInfo:
    """`latest`, `best` or a name; 404 naming the ones that exist, or `none_yet` (409: try again later; the
    download routes say 404) when the job has none yet."""
    ckpt = jobs.checkpoint(rec, ref)
    if ckpt is not None:
        return ckpt
    existing = jobs.checkpoints(rec.id)
    if existing or ref not in ("latest", "best") or none_yet == 404:
        names = ", ".join(c.name for c in existing[-5:]) or "none yet"
        raise HTTPException(404, f"job {rec.id} has no checkpoint {ref!r}; use 'latest', 'best' or one of: {names} "
                                 f"(GET /v1/jobs/{rec.id}/checkpoints lists them)")
    if rec.terminal:
        raise HTTPException(409, f"job {rec.id} ended {rec.status.value} without storing a checkpoint, so there is "
                                 "nothing to use; start a new job")
    snap = rec.config.get("tick_kimg", 0) * rec.config.get("snapshot_ticks", 1)
    raise HTTPException(409, f"job {rec.id} has no checkpoint yet (status {rec.status.value}, "
                             f"{rec.progress.kimg:g}/{rec.progress.total_kimg:g} kimg); the first one is stored "
                             f"after {snap:g} kimg, retry then")
