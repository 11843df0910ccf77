"""Samples from a job's checkpoint: a grid PNG, a zip of PNGs, or stored PNGs with URLs.

Sampling runs in the threadpool (never on the event loop); generators are cached.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from service import keys
from service.api.routes.jobs import load_job
from service.auth import check_storage
from service.deps import GeneratorsDep, JobsDep, PrincipalDep, SettingsDep, StoreDep, TenantDep
from service.ids import is_valid_id, new_id
from service.jobs.records import JobRecord, utcnow
from service.sampling import BadClass, check_class, generate, grid_png, individual_pngs, zip_pngs
from service.schemas.common import ERROR_RESPONSES
from service.schemas.samples import SampleImage, SampleRequest, SampleSet

router = APIRouter(prefix="/v1/jobs/{job_id}/samples", tags=["samples"], responses=ERROR_RESPONSES)


def _check(req: SampleRequest, settings) -> list[int]:
    count = len(req.seeds) if req.seeds is not None else req.n
    if count > settings.max_samples:  # before building any list: n may be astronomically large
        raise HTTPException(422, f"at most {settings.max_samples} samples per request, got {count}")
    seeds = list(req.seeds) if req.seeds is not None else list(range(req.n))
    if not settings.psi_min <= req.psi <= settings.psi_max:
        raise HTTPException(422, f"psi must be within [{settings.psi_min:g}, {settings.psi_max:g}], got {req.psi:g}")
    return seeds


def _no_checkpoint(rec: JobRecord, ref: str) -> HTTPException:
    if rec.checkpoints:
        names = ", ".join(c.name for c in rec.checkpoints[-5:])
        return HTTPException(404, f"job {rec.id} has no checkpoint {ref!r}; use 'latest', 'best' or one of: {names}")
    if rec.terminal:
        return HTTPException(409, f"job {rec.id} ended {rec.status.value} without storing a checkpoint, so there is "
                                  "nothing to sample from; start a new job")
    snap = rec.config.get("tick_kimg", 0) * rec.config.get("snapshot_ticks", 1)
    return HTTPException(409, f"job {rec.id} has no checkpoint yet (status {rec.status.value}, "
                              f"{rec.progress.kimg:g}/{rec.progress.total_kimg:g} kimg); the first one is stored "
                              f"after {snap:g} kimg, retry then")


@router.post("", summary="Generate samples: `grid` -> image/png, `zip` -> PNGs zipped, `json` -> stored, 201 with URLs",
             responses={200: {"content": {"image/png": {}, "application/zip": {}}}, 201: {"model": SampleSet}})
async def create_samples(job_id: str, req: SampleRequest, request: Request, settings: SettingsDep, store: StoreDep,
                         jobs: JobsDep, generators: GeneratorsDep, tenant: TenantDep,
                         principal: PrincipalDep) -> Response:
    seeds = _check(req, settings)
    rec = await run_in_threadpool(load_job, jobs, tenant, job_id)
    if req.format == "json" and principal.quotas is not None:  # only this format stores anything
        await run_in_threadpool(check_storage, store, principal)
    try:
        check_class(rec, req.class_index)  # before any checkpoint is loaded
    except BadClass as e:
        raise HTTPException(422, str(e)) from None
    ckpt = rec.checkpoint(req.checkpoint)
    if ckpt is None:
        raise _no_checkpoint(rec, req.checkpoint)
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
    sample_set = await run_in_threadpool(_store_samples, store, rec, ckpt.name, req.psi, seeds, pngs,
                                         str(request.base_url).rstrip("/"), req.class_index)
    return JSONResponse(sample_set.model_dump(mode="json"), status_code=201, headers=headers)


def _store_samples(store, rec: JobRecord, ckpt_name: str, psi: float, seeds: list[int], pngs: list[bytes],
                   base_url: str, class_index: int | None = None) -> SampleSet:
    sample_id = new_id("smp")
    prefix = keys.job_sample_prefix(rec.tenant, rec.id, sample_id)
    base = f"{base_url}/v1/jobs/{rec.id}/samples/{sample_id}/images"
    for i, png in enumerate(pngs):
        store.put_bytes(f"{prefix}{i:04d}.png", png, "image/png")
    sset = SampleSet(id=sample_id, job_id=rec.id, checkpoint=ckpt_name, psi=psi, created_at=utcnow(),
                     images=[SampleImage(index=i, seed=s, url=f"{base}/{i}") for i, s in enumerate(seeds)],
                     class_index=class_index)
    store.put_bytes(f"{prefix}samples.json", sset.model_dump_json().encode(), "application/json")  # published last
    return sset


def _load_set(store, rec: JobRecord, sample_id: str) -> SampleSet:
    if not is_valid_id(sample_id, "smp"):
        raise HTTPException(404, f"no sample set {sample_id!r}")
    try:
        return SampleSet.model_validate_json(store.get_bytes(f"{keys.job_sample_prefix(rec.tenant, rec.id, sample_id)}samples.json"))
    except KeyError:
        raise HTTPException(404, f"no sample set {sample_id!r} in job {rec.id}") from None


@router.get("/{sample_id}", response_model=SampleSet, summary="A stored sample set")
def get_samples(job_id: str, sample_id: str, store: StoreDep, jobs: JobsDep, tenant: TenantDep) -> SampleSet:
    return _load_set(store, load_job(jobs, tenant, job_id), sample_id)


@router.get("/{sample_id}/images/{index}", name="get_sample_image", response_class=Response,
            responses={200: {"content": {"image/png": {}}}}, summary="One stored sample image")
def get_sample_image(job_id: str, sample_id: str, index: int, store: StoreDep, jobs: JobsDep,
                     tenant: TenantDep) -> Response:
    rec = load_job(jobs, tenant, job_id)
    sset = _load_set(store, rec, sample_id)
    if not 0 <= index < len(sset.images):
        raise HTTPException(404, f"sample set {sample_id} has images 0..{len(sset.images) - 1}")
    data = store.get_bytes(f"{keys.job_sample_prefix(rec.tenant, rec.id, sample_id)}{index:04d}.png")
    return Response(data, media_type="image/png")
