"""Latents of a job's generator as first-class objects: save (from a seed; projections and edits save theirs),
list, fetch (JSON or .npy), render, walk between two (GIF), delete.

Generation runs in the threadpool with the same generator cache as /samples, under a heavy-request slot.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from service.api.deps import CoreDep, GeneratorsDep, HeavySlot, JobsDep, PrincipalDep, SettingsDep, TenantDep
from service.api.latent_ops import (
    check_psi,
    generator_for,
    gif_of,
    latent_errors,
    latent_repo,
    latent_tensor,
    load_latent,
    png_of,
    require_stylegan2_job,
    resolve,
)
from service.api.lookups import load_job
from service.api.pagination import PageCursor, PageLimit, check_cursor, page_fields
from service.api.sampling import GeneratorCache
from service.api.schemas.common import ERROR_RESPONSES
from service.api.schemas.latents import Latent, LatentCreate, LatentInterpolationRequest, LatentList
from service.api.storage_checks import purge_quietly
from service.core.apikeys import Principal
from service.core.ids import new_id
from service.core.jobs import JobRecord
from service.core.latents import LatentRecord, LatentRepo, kind_of, npy_bytes
from service.core.services import Core

router = APIRouter(prefix="/v1/jobs/{job_id}/latents", tags=["latents"], responses=ERROR_RESPONSES)
LatentsDep = Annotated[LatentRepo, Depends(latent_repo)]


def latent_view(lat: LatentRecord, base_url: str) -> Latent:
    base = f"{base_url}/v1/jobs/{lat.job_id}/latents/{lat.id}"
    return Latent(id=lat.id, job_id=lat.job_id, name=lat.name, kind=lat.kind, shape=lat.shape, source=lat.source,
                  checkpoint=lat.checkpoint, checkpoint_sha256=lat.checkpoint_sha256, size=lat.size,
                  created_at=lat.created_at, npy_url=f"{base}/w.npy", image_url=f"{base}/image.png")


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def save_from_seed(core: Core, cache: GeneratorCache, principal: Principal, rec: JobRecord, body: LatentCreate
                   ) -> LatentRecord:
    from gan_core.latents import w_from_seeds

    G, ckpt = generator_for(core, cache, rec, body.checkpoint)
    with latent_errors():
        w = w_from_seeds(G, [body.seed], body.psi).cpu().numpy()  # [1, w_dim]
    lat = LatentRecord(id=new_id("lat"), tenant=rec.tenant, job_id=rec.id, name=body.name, kind=kind_of(w.shape),
                       shape=list(w.shape), source={"type": "seed", "seed": body.seed, "psi": body.psi},
                       checkpoint=ckpt.name, checkpoint_sha256=ckpt.sha256)
    return core.latents.save(core.store, lat, npy_bytes(w), principal.quotas)  # 429 when storage is full


@router.post("", status_code=201, response_model=Latent, dependencies=[HeavySlot],
             summary="Save a seed's W latent (truncated by psi); rendering it with psi 1 gives that sample")
async def create_latent(job_id: str, body: LatentCreate, request: Request, settings: SettingsDep, core: CoreDep,
                        jobs: JobsDep, generators: GeneratorsDep, tenant: TenantDep, principal: PrincipalDep) -> Latent:
    check_psi(body.psi, settings)
    rec = await run_in_threadpool(load_job, jobs, tenant, job_id)
    lat = await run_in_threadpool(save_from_seed, core, generators, principal, rec, body)
    return latent_view(lat, _base(request))


@router.get("", response_model=LatentList, summary="A job's saved latents, newest first")
def list_latents(
    job_id: str, request: Request, jobs: JobsDep, latents: LatentsDep, tenant: TenantDep,
    limit: PageLimit = 100,
    cursor: PageCursor = None,
) -> LatentList:
    rec = load_job(jobs, tenant, job_id)
    check_cursor(cursor, "lat")
    page, next_cursor = latents.list(tenant, rec.id, limit=limit, cursor=cursor)
    return LatentList(data=[latent_view(x, _base(request)) for x in page], **page_fields(next_cursor))


@router.get("/{latent_id}", response_model=Latent, summary="One latent (JSON; its values: .../w.npy)")
def get_latent(job_id: str, latent_id: str, request: Request, jobs: JobsDep, latents: LatentsDep,
               tenant: TenantDep) -> Latent:
    return latent_view(load_latent(latents, load_job(jobs, tenant, job_id), latent_id), _base(request))


@router.get("/{latent_id}/w.npy", response_class=Response, summary="The latent's values as float32 .npy "
            "([1, w_dim] or [1, num_ws, w_dim]; numpy.load, or gan_core.latents.load_w)",
            responses={200: {"content": {"application/octet-stream": {}}}})
def download_latent(job_id: str, latent_id: str, core: CoreDep, jobs: JobsDep, latents: LatentsDep,
                    tenant: TenantDep) -> Response:
    lat = load_latent(latents, load_job(jobs, tenant, job_id), latent_id)
    return Response(core.store.get_bytes(lat.object_key), media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{lat.id}.npy"'})


def render_latent(core: Core, cache: GeneratorCache, rec: JobRecord, lat: LatentRecord, psi: float,
                  checkpoint: str) -> tuple[bytes, str]:
    from gan_core.latents import render

    G, ckpt = generator_for(core, cache, rec, checkpoint)
    with latent_errors():
        images = render(G, latent_tensor(core, lat), psi=psi)
    if len(images) != 1:
        raise HTTPException(422, f"latent {lat.id} holds {len(images)} latents; render them one at a time")
    return png_of(images), ckpt.name


@router.get("/{latent_id}/image.png", dependencies=[HeavySlot], response_class=Response,
            responses={200: {"content": {"image/png": {}}}},
            summary="The latent rendered (constant noise), truncated by psi (1: as saved)")
async def latent_image(
    job_id: str, latent_id: str, settings: SettingsDep, core: CoreDep, jobs: JobsDep, latents: LatentsDep,
    generators: GeneratorsDep, tenant: TenantDep,
    psi: Annotated[float, Query(description="truncation toward the mean w; 1 = the latent as saved")] = 1.0,
    checkpoint: Annotated[str, Query(min_length=1, max_length=64)] = "latest",
) -> Response:
    check_psi(psi, settings)
    rec = await run_in_threadpool(load_job, jobs, tenant, job_id)
    require_stylegan2_job(rec)
    lat = await run_in_threadpool(load_latent, latents, rec, latent_id)
    png, used = await run_in_threadpool(render_latent, core, generators, rec, lat, psi, checkpoint)
    return Response(png, media_type="image/png", headers={"X-Checkpoint": used})


@router.delete("/{latent_id}", status_code=204, response_class=Response,
               summary="Delete a latent; its storage is credited at once")
def delete_latent(job_id: str, latent_id: str, core: CoreDep, jobs: JobsDep, latents: LatentsDep,
                  tenant: TenantDep) -> Response:
    rec = load_job(jobs, tenant, job_id)
    load_latent(latents, rec, latent_id)
    latents.delete(tenant, rec.id, latent_id)
    purge_quietly(core)
    return Response(status_code=204)


def interpolation_gif(core: Core, cache: GeneratorCache, rec: JobRecord, req: LatentInterpolationRequest
                      ) -> tuple[bytes, str]:
    from gan_core.latents import interpolation_frames_w

    G, ckpt = generator_for(core, cache, rec, req.checkpoint)
    a, b = resolve(core, rec, G, req.a, "a"), resolve(core, rec, G, req.b, "b")
    with latent_errors():
        frames = interpolation_frames_w(G, a, b, steps=req.steps, psi=req.psi)
    return gif_of(frames, req.duration_ms, req.boomerang), ckpt.name


@router.post("/interpolation", dependencies=[HeavySlot], response_class=Response,
             responses={200: {"content": {"image/gif": {}}}},
             summary="Walk linearly in W between two latents (or seeds, or one of each): an animated GIF")
async def interpolate_latents(job_id: str, req: LatentInterpolationRequest, settings: SettingsDep, core: CoreDep,
                              jobs: JobsDep, generators: GeneratorsDep, tenant: TenantDep) -> Response:
    if req.steps > settings.max_samples:
        raise HTTPException(422, f"at most {settings.max_samples} frames (steps) per request, got {req.steps}")
    check_psi(req.psi, settings)
    rec = await run_in_threadpool(load_job, jobs, tenant, job_id)
    gif, used = await run_in_threadpool(interpolation_gif, core, generators, rec, req)
    return Response(gif, media_type="image/gif", headers={"X-Checkpoint": used})
