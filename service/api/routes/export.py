"""Export a job's generator: `GET /v1/jobs/{id}/export?format=safetensors|torchscript|onnx&checkpoint=latest`.

- `safetensors`: application/zip holding `model.safetensors` (G_ema weights) and `config.json`
  (network + training config, z_dim, c_dim, resolution, versions); loads back with
  `gan_core.export.load_safetensors`.
- `torchscript`: one `.pt` that needs only torch: `torch.jit.load(f)(z, 0.7)` -> uint8 images,
  the same images (within one rounding step) as POST /v1/jobs/{id}/samples for the same seeds and psi.
- `onnx` (StyleGAN2 only): one `.onnx` for onnxruntime, inputs `z` [N, z_dim] and `psi` [], output uint8
  images; checked against the generator (at most one level apart) before it is stored (gan_core.export).

A format the generator cannot take (ONNX of an SNGAN/BigGAN) is a 422 with the library's message; a server
without the optional `export` extra answers 501 for ONNX.

The generator comes from the same verified, cached load as sampling; tracing runs in the threadpool.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.concurrency import run_in_threadpool

from service.api.deps import CoreDep, GeneratorsDep, HeavySlot, JobsDep, TenantDep
from service.api.lookups import load_job, require_checkpoint
from service.api.sampling import GeneratorCache
from service.api.schemas.common import ERROR_RESPONSES
from service.core import blobs
from service.core import object_keys as keys
from service.core.jobs import CheckpointInfo, JobRecord
from service.core.services import Core
from service.core.storage import ObjectNotFound

router = APIRouter(prefix="/v1/jobs/{job_id}/export", tags=["export"], responses=ERROR_RESPONSES)

MEDIA = {"safetensors": ("application/zip", "safetensors.zip"), "torchscript": ("application/octet-stream", "torchscript.pt"),
         "onnx": ("application/octet-stream", "generator.onnx")}


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
    except ExportError as e:  # a ValueError whose message says what fits instead
        raise HTTPException(422, f"this generator cannot be exported as {fmt}: {e}") from None


def _onnx_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript"))


@router.get("", dependencies=[HeavySlot], response_class=Response, summary="Download the generator as safetensors (+config.json, zipped), "
            "TorchScript (needs only torch) or ONNX (onnxruntime; StyleGAN2)",
            responses={200: {"content": {"application/zip": {}, "application/octet-stream": {}}}})
async def export_generator(
    job_id: str, jobs: JobsDep, core: CoreDep, generators: GeneratorsDep, tenant: TenantDep,
    format: Annotated[Literal["safetensors", "torchscript", "onnx"], Query(description="safetensors: model.safetensors + "
                      "config.json in a zip; torchscript: a .pt for torch.jit.load; onnx: a .onnx for onnxruntime")],
    checkpoint: Annotated[str, Query(min_length=1, max_length=64, description="'latest', 'best' or a name")] = "latest",
) -> Response:
    rec = await run_in_threadpool(load_job, jobs, tenant, job_id)
    ckpt = await run_in_threadpool(require_checkpoint, jobs, rec, checkpoint)
    if format == "onnx" and not _onnx_available():
        raise HTTPException(501, "this server cannot make ONNX exports: it lacks the optional 'export' extra "
                                 "(pip install 'diggan-service[export]': onnx, onnxscript, onnxruntime); ask for "
                                 "torchscript or safetensors")
    data = await run_in_threadpool(cached_export, core, generators, rec, ckpt, format)
    media, suffix = MEDIA[format]
    stem = ckpt.name.removesuffix(".pt")
    return Response(data, media_type=media, headers={
        "Content-Disposition": f'attachment; filename="{rec.id}-{stem}-{suffix}"',
        "X-Checkpoint": ckpt.name, "X-Checkpoint-SHA256": ckpt.sha256})
