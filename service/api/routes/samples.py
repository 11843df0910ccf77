"""Samples from a job's checkpoint: a grid PNG, a zip of PNGs, or stored PNGs with URLs (a sample set).

Sampling runs in the threadpool (never on the event loop); generators are cached.
"""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from service.api.deps import (
    CoreDep,
    GeneratorsDep,
    HeavySlot,
    JobsDep,
    PrincipalDep,
    SamplesDep,
    SettingsDep,
    TenantDep,
)
from service.api.lookups import load_job, require_checkpoint
from service.api.sampling import BadClass, check_class, generate, grid_png, individual_pngs, zip_pngs
from service.api.schemas.common import ERROR_RESPONSES
from service.api.schemas.samples import SampleImage, SampleRequest, SampleSet
from service.api.storage_checks import purge_quietly, refuse_when_full
from service.core import object_keys as keys
from service.core.apikeys import Principal
from service.core.ids import is_valid_id, new_id
from service.core.jobs import JobRecord
from service.core.samples import SampleSetRecord
from service.core.services import Core

router = APIRouter(prefix="/v1/jobs/{job_id}/samples", tags=["samples"], responses=ERROR_RESPONSES)


def _check(req: SampleRequest, settings) -> list[int]:
    count = len(req.seeds) if req.seeds is not None else req.n
    if count > settings.max_samples:  # before building any list: n may be astronomically large
        raise HTTPException(422, f"at most {settings.max_samples} samples per request, got {count}")
    seeds = list(req.seeds) if req.seeds is not None else list(range(req.n))
    if not settings.psi_min <= req.psi <= settings.psi_max:
        raise HTTPException(422, f"psi must be within [{settings.psi_min:g}, {settings.psi_max:g}], got {req.psi:g}")
    return seeds


@router.post("", dependencies=[HeavySlot], summary="Generate samples: `grid` -> image/png, `zip` -> PNGs zipped, `json` -> stored, 201 with URLs",
             responses={200: {"content": {"image/png": {}, "application/zip": {}}}, 201: {"model": SampleSet}})
async def create_samples(job_id: str, req: SampleRequest, request: Request, settings: SettingsDep, core: CoreDep,
                         jobs: JobsDep, generators: GeneratorsDep, tenant: TenantDep,
                         principal: PrincipalDep) -> Response:
    seeds = _check(req, settings)
    rec = await run_in_threadpool(load_job, jobs, tenant, job_id)
    if req.format == "json" and principal.quotas is not None:  # only this format stores anything
        await run_in_threadpool(refuse_when_full, core, principal)
    try:
        check_class(rec, req.class_index)  # before any checkpoint is loaded
    except BadClass as e:
        raise HTTPException(422, str(e)) from None
    ckpt = await run_in_threadpool(require_checkpoint, jobs, rec, req.checkpoint)
    try:
        images = await run_in_threadpool(generate, generators, rec, ckpt, seeds, req.psi, req.class_index)  # 409 if unreadable
    except BadClass as e:
        raise HTTPException(422, str(e)) from None
    headers = {"X-Checkpoint": ckpt.name, "X-Seeds": ",".join(map(str, seeds))[:2000]}
    if req.class_index is not None:
        headers["X-Class"] = str(req.class_index)
    if req.format == "grid":
        png = await run_in_threadpool(grid_png, images, req.nrow)
        return Response(png, media_type="image/png", headers=headers)
    pngs = await run_in_threadpool(individual_pngs, images)
    if req.format == "zip":
        data = await run_in_threadpool(zip_pngs, pngs, seeds)
        headers["Content-Disposition"] = f'attachment; filename="{rec.id}-samples.zip"'
        return Response(data, media_type="application/zip", headers=headers)
    stored = await run_in_threadpool(_store_samples, core, principal, rec, ckpt.name, req.psi, seeds, pngs,
                                     req.class_index)
    view = _view(stored, str(request.base_url).rstrip("/"))
    return JSONResponse(view.model_dump(mode="json"), status_code=201, headers=headers)


def _store_samples(core: Core, principal: Principal, rec: JobRecord, ckpt_name: str, psi: float, seeds: list[int],
                   pngs: list[bytes], class_index: int | None) -> SampleSetRecord:
    sample_id = new_id("smp")
    sset = SampleSetRecord(id=sample_id, tenant=rec.tenant, job_id=rec.id, checkpoint=ckpt_name, psi=psi,
                           class_index=class_index, seeds=seeds,
                           object_prefix=keys.job_sample_prefix(rec.tenant, rec.id, sample_id))
    sset = core.samples.reserve(sset, [len(p) for p in pngs], principal.quotas)  # 429 when it does not fit
    try:
        for i, png in enumerate(pngs):
            core.store.put_bytes(sset.image_key(i), png, "image/png")
        core.samples.publish(sset)
    except BaseException:
        core.samples.abort(sset, core.store)
        raise
    return sset


def _view(sset: SampleSetRecord, base_url: str) -> SampleSet:
    base = f"{base_url}/v1/jobs/{sset.job_id}/samples/{sset.id}/images"
    return SampleSet(id=sset.id, job_id=sset.job_id, checkpoint=sset.checkpoint, psi=sset.psi,
                     created_at=sset.created_at or datetime.now(timezone.utc), class_index=sset.class_index,
                     images=[SampleImage(index=i, seed=s, url=f"{base}/{i}") for i, s in enumerate(sset.seeds)])


def _load_set(samples, rec: JobRecord, sample_id: str) -> SampleSetRecord:
    sset = samples.find(rec.tenant, rec.id, sample_id) if is_valid_id(sample_id, "smp") else None
    if sset is None:
        raise HTTPException(404, f"no sample set {sample_id!r} in job {rec.id}")
    return sset


@router.get("/{sample_id}", response_model=SampleSet, summary="A stored sample set")
def get_samples(job_id: str, sample_id: str, request: Request, samples: SamplesDep, jobs: JobsDep,
                tenant: TenantDep) -> SampleSet:
    sset = _load_set(samples, load_job(jobs, tenant, job_id), sample_id)
    return _view(sset, str(request.base_url).rstrip("/"))


@router.get("/{sample_id}/images/{index}", name="get_sample_image", response_class=Response,
            responses={200: {"content": {"image/png": {}}}}, summary="One stored sample image")
def get_sample_image(job_id: str, sample_id: str, index: int, core: CoreDep, samples: SamplesDep, jobs: JobsDep,
                     tenant: TenantDep) -> Response:
    sset = _load_set(samples, load_job(jobs, tenant, job_id), sample_id)
    if not 0 <= index < len(sset.seeds):
        raise HTTPException(404, f"sample set {sample_id} has images 0..{len(sset.seeds) - 1}")
    return Response(core.store.get_bytes(sset.image_key(index)), media_type="image/png")


@router.delete("/{sample_id}", status_code=204, response_class=Response,
               summary="Delete a stored sample set; its storage is credited at once")
def delete_samples(job_id: str, sample_id: str, core: CoreDep, samples: SamplesDep, jobs: JobsDep,
                   tenant: TenantDep) -> Response:
    rec = load_job(jobs, tenant, job_id)
    _load_set(samples, rec, sample_id)
    samples.delete(tenant, rec.id, sample_id)
    purge_quietly(core)
    return Response(status_code=204)
