"""Export a job's generator: `GET /v1/jobs/{id}/export?format=safetensors|torchscript&checkpoint=latest`.

- `safetensors`: application/zip holding `model.safetensors` (G_ema weights) and `config.json`
  (network + training config, z_dim, c_dim, resolution, versions); loads back with
  `gan_core.export.load_safetensors`.
- `torchscript`: one `.pt` that needs only torch: `torch.jit.load(f)(z, 0.7)` -> uint8 images,
  the same images (within one rounding step) as POST /v1/jobs/{id}/samples for the same seeds and psi.

The generator comes from the same verified, cached load as sampling; tracing runs in the threadpool.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.concurrency import run_in_threadpool

from service.api.lookups import load_job, require_checkpoint
from service.api.deps import CoreDep, GeneratorsDep, HeavySlot, JobsDep, TenantDep
from service.api.sampling import GeneratorCache
from service.api.schemas.common import ERROR_RESPONSES
from service.core import blobs
from service.core import object_keys as keys
from service.core.jobs import CheckpointInfo, JobRecord
from service.core.services import Core
from service.core.storage import ObjectNotFound

router = APIRouter(prefix="/v1/jobs/{job_id}/export", tags=["export"], responses=ERROR_RESPONSES)

MEDIA = {"safetensors": ("application/zip", "safetensors.zip"), "torchscript": ("application/octet-stream", "torchscript.pt")}


def cached_export(core: Core, cache: GeneratorCache, rec: JobRecord, ckpt: CheckpointInfo, fmt: str) -> bytes:
    """An export is made once per checkpoint and format, then served from the store (and charged to the
    tenant's storage, and deleted with the job)."""
    key = f"{keys.job_reports_prefix(rec.tenant, rec.id)}exports/{ckpt.sha256[:32]}-{fmt}"
    try:
        return core.store.get_bytes(key)
    except ObjectNotFound:
        pass
    data = _export(cache, rec, ckpt, fmt)
    core.store.put_bytes(key, data)
    with core.db.write() as s:
        blobs.register(s, rec.tenant, key, len(data), "job", rec.id)
    return data


def _export(cache: GeneratorCache, rec: JobRecord, ckpt: CheckpointInfo, fmt: str) -> bytes:
    from gan_core.export import ExportError, export_bytes, export_config

    G = cache.for_checkpoint(rec, ckpt)  # 409 if the checkpoint does not verify or load
    # The record's config is what the worker trained with; export_config takes the network part from G.
    source = {"job_id": rec.id, "dataset_id": rec.dataset_id, "checkpoint": ckpt.name, "sha256": ckpt.sha256,
              "kimg": ckpt.kimg}
    try:
        return export_bytes(G, export_config(G, rec.config, source), fmt)
    except ExportError as e:
        raise HTTPException(409, f"this generator cannot be exported as {fmt}: {e}") from None


@router.get("", dependencies=[HeavySlot], response_class=Response, summary="Download the generator as safetensors (+config.json, zipped) "
            "or TorchScript (needs only torch)",
            responses={200: {"content": {"application/zip": {}, "application/octet-stream": {}}}})
async def export_generator(
    job_id: str, jobs: JobsDep, core: CoreDep, generators: GeneratorsDep, tenant: TenantDep,
    format: Annotated[Literal["safetensors", "torchscript"], Query(description="safetensors: model.safetensors + "
                      "config.json in a zip; torchscript: a .pt for torch.jit.load")],
    checkpoint: Annotated[str, Query(min_length=1, max_length=64, description="'latest', 'best' or a name")] = "latest",
) -> Response:
    rec = await run_in_threadpool(load_job, jobs, tenant, job_id)
    ckpt = await run_in_threadpool(require_checkpoint, jobs, rec, checkpoint)
    data = await run_in_threadpool(cached_export, core, generators, rec, ckpt, format)
    media, suffix = MEDIA[format]
    stem = ckpt.name.removesuffix(".pt")
    return Response(data, media_type=media, headers={
        "Content-Disposition": f'attachment; filename="{rec.id}-{stem}-{suffix}"',
        "X-Checkpoint": ckpt.name, "X-Checkpoint-SHA256": ckpt.sha256})
