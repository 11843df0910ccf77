"""An interpolation between two seeds of a job's checkpoint, as an animated GIF (the dashboard's sampler).

Generation runs in the threadpool with the same generator cache as /samples.
"""

from __future__ import annotations

import io
from typing import Any

from fastapi import APIRouter, HTTPException, Response
from fastapi.concurrency import run_in_threadpool

from service.api.deps import GeneratorsDep, HeavySlot, JobsDep, SettingsDep, TenantDep
from service.api.lookups import load_job, require_checkpoint
from service.api.sampling import BadClass, GeneratorCache, check_class
from service.api.schemas.common import ERROR_RESPONSES
from service.api.schemas.interpolation import InterpolationRequest
from service.core.jobs import CheckpointInfo, JobRecord

router = APIRouter(prefix="/v1/jobs/{job_id}/samples", tags=["samples"], responses=ERROR_RESPONSES)


def _check(req: InterpolationRequest, settings: Any) -> None:
    if req.steps > settings.max_samples:
        raise HTTPException(422, f"at most {settings.max_samples} frames (steps) per request, got {req.steps}")
    if not settings.psi_min <= req.psi <= settings.psi_max:
        raise HTTPException(422, f"psi must be within [{settings.psi_min:g}, {settings.psi_max:g}], got {req.psi:g}")


def interpolation_gif(cache: GeneratorCache, rec: JobRecord, ckpt: CheckpointInfo, req: InterpolationRequest) -> bytes:
    from gan_core.sampling import interpolation_frames

    G = cache.for_checkpoint(rec, ckpt)
    try:
        frames = interpolation_frames(G, req.seed_a, req.seed_b, steps=req.steps, psi=req.psi, device=cache.device,
                                      class_index=req.class_index)
    except ValueError as e:  # only the class check raises here: the checkpoint knows its classes
        if req.class_index is None:
            raise
        raise BadClass(f"{e} (job {rec.id})") from None
    if req.boomerang and len(frames) > 2:
        frames = frames + frames[-2:0:-1]  # back again, without repeating either end
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=req.duration_ms, loop=0)
    return buf.getvalue()


@router.post("/interpolation", dependencies=[HeavySlot], response_class=Response, responses={200: {"content": {"image/gif": {}}}},
             summary="Walk in W space between two seeds: an animated GIF")
async def create_interpolation(job_id: str, req: InterpolationRequest, settings: SettingsDep, jobs: JobsDep,
                               generators: GeneratorsDep, tenant: TenantDep) -> Response:
    _check(req, settings)
    rec = await run_in_threadpool(load_job, jobs, tenant, job_id)
    try:
        check_class(rec, req.class_index)  # before any checkpoint is loaded
        ckpt = await run_in_threadpool(require_checkpoint, jobs, rec, req.checkpoint)
        gif = await run_in_threadpool(interpolation_gif, generators, rec, ckpt, req)  # 409 if unreadable
    except BadClass as e:
        raise HTTPException(422, str(e)) from None
    return Response(gif, media_type="image/gif",
                    headers={"X-Checkpoint": ckpt.name, "Content-Disposition": f'inline; filename="{rec.id}-'
                             f'{req.seed_a}-{req.seed_b}.gif"'})
