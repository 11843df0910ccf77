"""Editing a job's generator's latents: SeFa directions (Shen & Zhou 2021), images along a direction, a direction
applied to a saved latent (saved as a new one), and style mixing (one image, or the papers' grid).

Sources are seeds or saved latents (service/api/schemas/latents.py: LatentRef); `psi` truncates them first, as
NVlabs' style_mixing.py and the SeFa authors do. Everything runs in the threadpool under a heavy-request slot.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from service.api.deps import CoreDep, GeneratorsDep, HeavySlot, JobsDep, PrincipalDep, SettingsDep, TenantDep
from service.api.latent_ops import (
    check_psi,
    generator_for,
    latent_errors,
    latent_repo,
    latent_tensor,
    load_latent,
    png_of,
    resolve,
)
from service.api.lookups import load_job
from service.api.routes.latents import latent_view
from service.api.sampling import GeneratorCache, png_bytes
from service.api.schemas.common import ERROR_RESPONSES
from service.api.schemas.editing import (
    Direction,
    Directions,
    EditImageRequest,
    EditStripRequest,
    LatentEditRequest,
    MixGridRequest,
    MixRequest,
)
from service.api.schemas.latents import Latent
from service.core.apikeys import Principal
from service.core.ids import new_id
from service.core.jobs import JobRecord
from service.core.latents import LatentRecord, LatentRepo, kind_of, npy_bytes
from service.core.services import Core

router = APIRouter(prefix="/v1/jobs/{job_id}", tags=["editing"], responses=ERROR_RESPONSES)
LatentsDep = Annotated[LatentRepo, Depends(latent_repo)]
MAX_DIRECTIONS = 64  # GET /directions?k=...: more than anyone browses; each is w_dim floats in the answer


def _layers(spec: Any) -> Any:
    return None if spec in (None, "", []) else spec


def _sefa(G: Any, num: int, layers: Any) -> Any:
    from gan_core.latents import sefa_directions

    with latent_errors():
        return sefa_directions(G, num=num, layers=_layers(layers))


# ------------------------------------------------------------------------------------------- SeFa


def directions(core: Core, cache: GeneratorCache, rec: JobRecord, k: int, layers: str | None, checkpoint: str
               ) -> Directions:
    G, ckpt = generator_for(core, cache, rec, checkpoint)
    sefa = _sefa(G, k, layers)
    return Directions(job_id=rec.id, checkpoint=ckpt.name, layers=sefa.layers, num_ws=G.num_ws, w_dim=G.w_dim,
                      directions=[Direction(index=i, eigenvalue=float(sefa.eigenvalues[i]),
                                            vector=[float(x) for x in sefa.directions[i]])
                                  for i in range(len(sefa.directions))])


@router.get("/directions", response_model=Directions, dependencies=[HeavySlot],
            summary="The top-k SeFa edit directions of a checkpoint (closed form: no data, no training)")
async def get_directions(
    job_id: str, core: CoreDep, jobs: JobsDep, generators: GeneratorsDep, tenant: TenantDep,
    k: Annotated[int, Query(ge=1, le=MAX_DIRECTIONS, description="how many directions, strongest first")] = 5,
    layers: Annotated[str | None, Query(max_length=200, description="style layers, e.g. 0-3 (default: all but the "
                                        "last ToRGB)")] = None,
    checkpoint: Annotated[str, Query(min_length=1, max_length=64)] = "latest",
) -> Directions:
    rec = await run_in_threadpool(load_job, jobs, tenant, job_id)
    return await run_in_threadpool(directions, core, generators, rec, k, layers, checkpoint)


def _edited(core: Core, rec: JobRecord, G: Any, source: Any, psi: float, direction: int, layers: Any) -> tuple[Any, Any]:
    """(the truncated source ws, the SeFa factorisation holding `direction`)."""
    from gan_core.latents import truncate

    ws = truncate(G, resolve(core, rec, G, source, "source"), psi)
    sefa = _sefa(G, direction + 1, layers)
    return ws, sefa


def edit_strip_png(core: Core, cache: GeneratorCache, rec: JobRecord, req: EditStripRequest) -> tuple[bytes, str, float]:
    from gan_core.latents import edit_strip

    G, ckpt = generator_for(core, cache, rec, req.checkpoint)
    ws, sefa = _edited(core, rec, G, req.source, req.psi, req.direction, req.layers)
    with latent_errors():
        strip, _ = edit_strip(G, ws, sefa, index=req.direction, strengths=req.strengths)
    return png_bytes(strip), ckpt.name, float(sefa.eigenvalues[req.direction])


@router.post("/edits/strip", dependencies=[HeavySlot], response_class=Response,
             responses={200: {"content": {"image/png": {}}}},
             summary="A latent or seed along one SeFa direction at each strength: a one-row PNG strip")
async def create_edit_strip(job_id: str, req: EditStripRequest, settings: SettingsDep, core: CoreDep, jobs: JobsDep,
                            generators: GeneratorsDep, tenant: TenantDep) -> Response:
    check_psi(req.psi, settings)
    rec = await run_in_threadpool(load_job, jobs, tenant, job_id)
    png, used, eig = await run_in_threadpool(edit_strip_png, core, generators, rec, req)
    return Response(png, media_type="image/png", headers={"X-Checkpoint": used, "X-Eigenvalue": f"{eig:.6g}",
                                                          "X-Strengths": ",".join(f"{s:g}" for s in req.strengths)})


def edit_image_png(core: Core, cache: GeneratorCache, rec: JobRecord, req: EditImageRequest) -> tuple[bytes, str]:
    from gan_core.latents import apply_direction, render

    G, ckpt = generator_for(core, cache, rec, req.checkpoint)
    ws, sefa = _edited(core, rec, G, req.source, req.psi, req.direction, req.layers)
    with latent_errors():
        edited = apply_direction(G, ws, sefa.directions[req.direction], req.strength, sefa.layers)
        return png_of(render(G, edited)), ckpt.name


@router.post("/edits/image", dependencies=[HeavySlot], response_class=Response,
             responses={200: {"content": {"image/png": {}}}},
             summary="One image: a latent or seed moved along a SeFa direction by `strength` (the dashboard's slider)")
async def create_edit_image(job_id: str, req: EditImageRequest, settings: SettingsDep, core: CoreDep, jobs: JobsDep,
                            generators: GeneratorsDep, tenant: TenantDep) -> Response:
    check_psi(req.psi, settings)
    rec = await run_in_threadpool(load_job, jobs, tenant, job_id)
    png, used = await run_in_threadpool(edit_image_png, core, generators, rec, req)
    return Response(png, media_type="image/png", headers={"X-Checkpoint": used, "Cache-Control": "no-store"})


def save_edit(core: Core, cache: GeneratorCache, principal: Principal, rec: JobRecord, latent_id: str,
              req: LatentEditRequest) -> LatentRecord:
    from gan_core.latents import apply_direction

    src = load_latent(core.latents, rec, latent_id)
    G, ckpt = generator_for(core, cache, rec, req.checkpoint)
    sefa = _sefa(G, req.direction + 1, req.layers)
    with latent_errors():
        ws = apply_direction(G, latent_tensor(core, src), sefa.directions[req.direction], req.strength, sefa.layers)
    w = ws.detach().cpu().numpy()  # [1, num_ws, w_dim]: an edit on some layers makes a W+ latent
    lat = LatentRecord(id=new_id("lat"), tenant=rec.tenant, job_id=rec.id, name=req.name, kind=kind_of(w.shape),
                       shape=list(w.shape), checkpoint=ckpt.name, checkpoint_sha256=ckpt.sha256,
                       source={"type": "edit", "latent_id": src.id, "direction": req.direction,
                               "strength": req.strength, "layers": sefa.layers,
                               "eigenvalue": float(sefa.eigenvalues[req.direction])})
    return core.latents.save(core.store, lat, npy_bytes(w), principal.quotas)


@router.post("/latents/{latent_id}/edit", status_code=201, response_model=Latent, dependencies=[HeavySlot],
             summary="Apply a SeFa direction with a strength to a saved latent; the result is saved as a new latent")
async def edit_latent(job_id: str, latent_id: str, req: LatentEditRequest, request: Request, core: CoreDep,
                      jobs: JobsDep, generators: GeneratorsDep, tenant: TenantDep, principal: PrincipalDep) -> Latent:
    rec = await run_in_threadpool(load_job, jobs, tenant, job_id)
    lat = await run_in_threadpool(save_edit, core, generators, principal, rec, latent_id, req)
    return latent_view(lat, str(request.base_url).rstrip("/"))


# ----------------------------------------------------------------------------------- style mixing


def mix_png(core: Core, cache: GeneratorCache, rec: JobRecord, req: MixRequest) -> tuple[bytes, str, list[int]]:
    from gan_core.latents import mix_ws, parse_styles, render, truncate

    G, ckpt = generator_for(core, cache, rec, req.checkpoint)
    row = truncate(G, resolve(core, rec, G, req.row, "row"), req.psi)
    col = truncate(G, resolve(core, rec, G, req.col, "col"), req.psi)
    with latent_errors():
        styles = parse_styles(req.styles, G.num_ws)
        return png_of(render(G, mix_ws(G, row, col, styles))), ckpt.name, styles


@router.post("/mixing", dependencies=[HeavySlot], response_class=Response,
             responses={200: {"content": {"image/png": {}}}},
             summary="Style mixing: `row` everywhere but the `styles` layers, which come from `col` (one PNG)")
async def create_mix(job_id: str, req: MixRequest, settings: SettingsDep, core: CoreDep, jobs: JobsDep,
                     generators: GeneratorsDep, tenant: TenantDep) -> Response:
    check_psi(req.psi, settings)
    rec = await run_in_threadpool(load_job, jobs, tenant, job_id)
    png, used, styles = await run_in_threadpool(mix_png, core, generators, rec, req)
    return Response(png, media_type="image/png", headers={"X-Checkpoint": used,
                                                          "X-Styles": ",".join(map(str, styles))})


def mix_grid_png(core: Core, cache: GeneratorCache, rec: JobRecord, req: MixGridRequest) -> tuple[bytes, str]:
    import torch

    from gan_core.latents import mixing_grid

    G, ckpt = generator_for(core, cache, rec, req.checkpoint)
    rows = torch.cat([resolve(core, rec, G, r, f"rows[{i}]") for i, r in enumerate(req.rows)])
    cols = torch.cat([resolve(core, rec, G, c, f"cols[{i}]") for i, c in enumerate(req.cols)])
    # Labels only key the cells: distinct numbers, so a seed on both sides cannot collide with a latent.
    row_labels = list(range(len(req.rows)))
    col_labels = list(range(len(req.rows), len(req.rows) + len(req.cols)))
    with latent_errors():
        grid, _ = mixing_grid(G, row_labels, col_labels, req.styles, psi=req.psi, row_w=rows, col_w=cols)
    return png_bytes(grid), ckpt.name


@router.post("/mixing/grid", dependencies=[HeavySlot], response_class=Response,
             responses={200: {"content": {"image/png": {}}}},
             summary="The style-mixing grid (StyleGAN Fig. 3): column sources on top, row sources on the left")
async def create_mix_grid(job_id: str, req: MixGridRequest, settings: SettingsDep, core: CoreDep, jobs: JobsDep,
                          generators: GeneratorsDep, tenant: TenantDep) -> Response:
    check_psi(req.psi, settings)  # at most 8 x 8 sources (the schema): 80 images
    rec = await run_in_threadpool(load_job, jobs, tenant, job_id)
    png, used = await run_in_threadpool(mix_grid_png, core, generators, rec, req)
    return Response(png, media_type="image/png", headers={"X-Checkpoint": used})
