"""Pictures of a job: training curves, and the memorization check (paper Fig. 7).

Both block (matplotlib, Inception on the CPU), so they run in the threadpool.
A memorization report is computed once per (checkpoint, n, psi) and stored
under the job, so asking again is a storage read.
"""

from __future__ import annotations

import json
import tempfile
import threading
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from service.api.deps import CoreDep, GeneratorsDep, HeavySlot, JobsDep, TenantDep
from service.api.lookups import load_job, require_checkpoint
from service.api.sampling import generate, png_bytes
from service.api.schemas.common import ERROR_RESPONSES
from service.core import blobs
from service.core import object_keys as keys
from service.core.jobs import JobRecord
from service.core.services import Core
from service.core.storage import ObjectNotFound

router = APIRouter(prefix="/v1/jobs/{job_id}/report", tags=["reports"], responses=ERROR_RESPONSES)

_extractor_lock = threading.Lock()
_extractor: Any = None
_train_features: Any = None  # FeatureCache, in memory: training sets are few and small


def _features() -> tuple[Any, Any]:
    """One Inception network and feature cache per API process, loaded on first use."""
    global _extractor, _train_features
    with _extractor_lock:
        if _extractor is None:
            from gan_core.metrics import FeatureCache, FeatureExtractor

            _extractor = FeatureExtractor(device="cpu")
            _train_features = FeatureCache(extractor=_extractor, max_entries=8)
    return _extractor, _train_features


def curves_png(series: dict[str, list[dict[str, Any]]], title: str) -> bytes:
    from gan_core.metrics import plot_curves

    snaps = [{"kimg": s["kimg"], **s["metrics"]} for s in series.get("snapshots", []) if s.get("metrics")]
    with tempfile.TemporaryDirectory() as tmp:
        path = plot_curves(series.get("ticks", []), snaps, Path(tmp) / "curves.png", title=title)
        return Path(path).read_bytes()


@router.get("/curves.png", dependencies=[HeavySlot], response_class=Response, responses={200: {"content": {"image/png": {}}}},
            summary="Losses, DIG and gradient norms, augment p, and KID/FID over kimg, as a PNG")
async def job_curves(job_id: str, jobs: JobsDep, tenant: TenantDep) -> Response:
    rec = await run_in_threadpool(load_job, jobs, tenant, job_id)
    series = {"ticks": await run_in_threadpool(jobs.ticks, rec.id),
              "snapshots": await run_in_threadpool(jobs.snapshots, rec.id)}
    png = await run_in_threadpool(curves_png, series, f"job {rec.id} ({rec.status.value})")
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


def tensorboard_zip(ticks: list[dict[str, Any]], snapshots: list[dict[str, Any]], job_id: str) -> bytes:
    import io
    import zipfile

    from gan_core.training.tensorboard import write_events

    with tempfile.TemporaryDirectory() as tmp:
        events = write_events(ticks, snapshots, Path(tmp) / job_id)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.write(events, f"{job_id}/{events.name}")
        return buf.getvalue()


@router.get("/tensorboard", response_class=Response, responses={200: {"content": {"application/zip": {}}}},
            summary="The job's training stats and snapshot metrics as TensorBoard event files (a zip: unzip it, "
                    "then `tensorboard --logdir .`)")
async def job_tensorboard(job_id: str, jobs: JobsDep, tenant: TenantDep) -> Response:
    rec = await run_in_threadpool(load_job, jobs, tenant, job_id)
    ticks = await run_in_threadpool(jobs.ticks, rec.id)
    snaps = await run_in_threadpool(jobs.snapshots, rec.id)
    data = await run_in_threadpool(tensorboard_zip, ticks, snaps, rec.id)
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{rec.id}-tensorboard.zip"'})


def memorization(core: Core, generators: Any, rec: JobRecord, ckpt_ref: str, n: int, psi: float) -> tuple[dict, bytes]:
    from gan_core.data import load_prepared, resize_images
    from gan_core.metrics import memorization_report

    store = core.store
    ckpt = require_checkpoint(core.jobs, rec, ckpt_ref)
    base = f"{keys.job_reports_prefix(rec.tenant, rec.id)}memorization-{ckpt.sha256[:16]}-n{n}-psi{psi:g}"
    try:
        return json.loads(store.get_bytes(base + ".json")), store.get_bytes(base + ".png")
    except ObjectNotFound:
        pass
    generated = generate(generators, rec, ckpt, list(range(n)), psi)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dataset.zip"
        store.get_file(keys.dataset_prepared(rec.tenant, rec.dataset_id), path)
        dataset = load_prepared(path)
    train = dataset.images
    if train.shape[-1] != generated.shape[-1]:
        train = resize_images(train, generated.shape[-1])  # compare at the resolution G was trained on
    extractor, cache = _features()
    report, grid = memorization_report(generated, train, k=3, extractor=extractor,
                                       train_features=cache.get_or_compute(train), train_names=dataset.names)
    report.update(job_id=rec.id, checkpoint=ckpt.name, seeds=list(range(n)), psi=psi)
    png, meta = png_bytes(grid), json.dumps(report).encode()
    store.put_bytes(base + ".png", png, "image/png")
    store.put_bytes(base + ".json", meta, "application/json")  # published last
    with core.db.write() as s:  # a stored report counts against the tenant's storage, and goes with the job
        blobs.register(s, rec.tenant, base + ".png", len(png), "job", rec.id)
        blobs.register(s, rec.tenant, base + ".json", len(meta), "job", rec.id)
    return report, png


@router.get("/memorization", dependencies=[HeavySlot], responses={200: {"content": {"image/png": {}, "application/json": {}}}},
            summary="Nearest training images of generated samples in Inception space (JSON or a PNG grid)")
async def job_memorization(
    job_id: str, jobs: JobsDep, tenant: TenantDep, core: CoreDep, generators: GeneratorsDep,
    format: Literal["json", "png"] = "json",
    n: int = Query(8, ge=1, le=32, description="generated samples (seeds 0..n-1)"),
    psi: float = Query(1.0, ge=0.0, le=1.0, description="truncation psi of the samples"),
    checkpoint: str = Query("latest", max_length=80, description="'latest', 'best' or a checkpoint name"),
) -> Response:
    rec = await run_in_threadpool(load_job, jobs, tenant, job_id)
    report, png = await run_in_threadpool(memorization, core, generators, rec, checkpoint, n, psi)
    if format == "png":
        return Response(png, media_type="image/png")
    return JSONResponse(report)
