"""Jobs: create (idempotent), list, get, cancel, delete, metrics, events (SSE), checkpoints."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse

from service.api.deps import CeleryDep, CoreDep, JobsDep, ModelsDep, PrincipalDep, SettingsDep, StoreDep, TenantDep
from service.api.event_stream import StreamPacer, acquire_stream_slot, event_stream_response, sse
from service.api.init_from import resolve_init_from
from service.api.job_config import JobConfigError, charged_kimg, fit_config_to_dataset, resolve_config_dict
from service.api.lookups import load_dataset, load_job, require_checkpoint
from service.api.pagination import PageCursor, PageLimit, check_cursor, page_fields
from service.api.schemas.common import ERROR_RESPONSES
from service.api.schemas.jobs import CheckpointList, Estimate, Job, JobCreate, JobEstimate, JobList, Metrics
from service.core import calibration, webhooks
from service.core.blobs import purge_deleted
from service.core.jobs import DatasetMissing, IdempotencyConflict, JobBusy, JobRecord, JobRepo, JobStatus
from service.core.queue import enqueue_calibration, enqueue_train, job_gpus
from service.core.quotas import check_new_job

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES)
log = logging.getLogger(__name__)



def job_view(rec: JobRecord) -> Job:
    return Job.model_validate(rec.model_dump())


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _resolve(body: JobCreate, request: Request, settings, jobs: JobRepo, models, tenant: str
             ) -> tuple[dict, dict | None]:
    """The job's full config and its init_from, or the 4xx that says what is wrong."""
    dataset = load_dataset(request.app.state.core.datasets, tenant, body.dataset_id)
    pretrained_network, init_from = None, None
    if body.init_from is not None:  # 404/409 when the model or checkpoint does not exist
        pretrained_network, init_from = resolve_init_from(body.init_from, tenant, models, jobs)
    try:
        config = resolve_config_dict(body, settings, pretrained_network)
        config = fit_config_to_dataset(config, dataset.num_classes)  # biggan: num_classes from the dataset's labels
    except JobConfigError as e:
        raise HTTPException(422, str(e)) from None
    if body.webhook is not None:
        try:
            webhooks.check_url(body.webhook.url, settings.webhooks_allow_private)
        except webhooks.WebhookUrlError as e:
            raise HTTPException(422, str(e)) from None
    return config, init_from


@router.post("/estimate", response_model=JobEstimate,
             summary="Check a job (config and quotas, as POST /v1/jobs would) without starting it, and estimate "
                     "how long it trains: a training worker times the same setup on its device (cached a week)")
def estimate_job(body: JobCreate, request: Request, settings: SettingsDep, jobs: JobsDep, models: ModelsDep,
                 core: CoreDep, celery: CeleryDep, tenant: TenantDep, principal: PrincipalDep) -> JobEstimate:
    config, _ = _resolve(body, request, settings, jobs, models, tenant)
    cost = charged_kimg(config)
    with core.db.read() as s:
        check_new_job(s, tenant, principal.quotas, cost)  # 429, as the real create would answer
    sig = calibration.signature(config)
    found, now = calibration.latest(core.db, sig), False
    if found is None:
        try:
            enqueue_calibration(celery, sig, config)
        except Exception as e:
            raise HTTPException(503, f"the job queue is unreachable ({type(e).__name__}); retry shortly") from None
        deadline = time.monotonic() + settings.calibration_wait_s
        while found is None and time.monotonic() < deadline:
            time.sleep(0.5)
            found = calibration.latest(core.db, sig)
        if found is None:
            raise HTTPException(503, f"no training worker was free to time this setup within "
                                     f"{settings.calibration_wait_s:g} s (they are busy training); retry later",
                                headers={"Retry-After": "60"})
        now = True
    sec_per_kimg, device, measured_at = found
    return JobEstimate(config=config, charged_kimg=cost, estimate=Estimate(
        sec_per_kimg=sec_per_kimg, total_seconds=sec_per_kimg * cost, kimg=float(config["kimg"]), device=device,
        measured_at=measured_at, calibrated_now=now))


@router.post("", status_code=202, response_model=Job,
             summary="Start a fine-tuning job (send an Idempotency-Key header to make retries safe)")
def create_job(
    body: JobCreate, request: Request, response: Response, settings: SettingsDep, jobs: JobsDep,
    models: ModelsDep, celery: CeleryDep, tenant: TenantDep, principal: PrincipalDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Job:
    body_hash = _sha(json.dumps(body.model_dump(mode="json"), sort_keys=True))
    idempotency = (_sha(idempotency_key), body_hash) if idempotency_key else None
    config, init_from = _resolve(body, request, settings, jobs, models, tenant)
    try:  # one transaction: the idempotency key, the quota checks and the job row (429 / 409 / 404)
        rec, replayed = jobs.create(
            tenant=tenant, dataset_id=body.dataset_id, config=config, init_from=init_from,
            request=body.model_dump(mode="json", exclude_unset=True), charged_kimg=charged_kimg(config),
            quotas=principal.quotas, idempotency=idempotency, idempotency_ttl_s=settings.idempotency_ttl_s,
            name=body.name, metadata=body.metadata,
            webhook=body.webhook.model_dump() if body.webhook is not None else None)
    except IdempotencyConflict:
        raise HTTPException(409, "this Idempotency-Key was already used with a different request body; "
                                 "use a new key for a different job") from None
    except DatasetMissing:
        raise HTTPException(404, f"no dataset {body.dataset_id!r}; upload one with POST /v1/datasets") from None
    if replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
        return job_view(rec)
    _send(celery, jobs, rec)
    return job_view(jobs.find(tenant, rec.id) or rec)


def _send(celery: object, jobs: JobRepo, rec: JobRecord) -> None:
    """After the commit: hand the job to the broker. If the broker is down the job stays queued and unsent,
    and the sweep sends it once the broker is back (the client already has its job id)."""
    try:
        enqueue_train(celery, rec.tenant, rec.id, job_gpus(rec.config))  # type: ignore[arg-type]
    except Exception as e:
        log.warning("job %s recorded but not yet sent to the queue (%s: %s); the sweep will send it",
                    rec.id, type(e).__name__, e)
        return
    jobs.mark_enqueued(rec.id)


@router.get("", response_model=JobList, summary="Your jobs, newest first, with cursor pagination; filter by "
            "status, name, and metadata[key]=value")
def list_jobs(
    request: Request, jobs: JobsDep, tenant: TenantDep,
    status: JobStatus | None = None,
    name: Annotated[str | None, Query(max_length=200, description="the job's name, exactly")] = None,
    limit: PageLimit = 20,
    cursor: PageCursor = None,
) -> JobList:
    check_cursor(cursor, "job")
    metadata = _metadata_filters(request)
    page, next_cursor = jobs.list(tenant, status=status, limit=limit, cursor=cursor, name=name, metadata=metadata)
    return JobList(data=[job_view(r) for r in page], **page_fields(next_cursor))


def _metadata_filters(request: Request) -> dict[str, str]:
    """`metadata[key]=value` query parameters (at most 4), keys checked like metadata keys."""
    import re

    from service.api.schemas.jobs import METADATA_KEY

    found = {}
    for param, value in request.query_params.multi_items():
        m = re.fullmatch(r"metadata\[(.*)\]", param)
        if m is None:
            continue
        if not re.match(METADATA_KEY, m.group(1)) or len(value) > 512:
            raise HTTPException(422, f"bad metadata filter {param[:80]!r}: use metadata[key]=value with a key of "
                                     "1-64 letters, digits or _.:- and a value of at most 512 characters")
        found[m.group(1)] = value
    if len(found) > 4:
        raise HTTPException(422, "at most 4 metadata filters")
    return found


@router.get("/{job_id}", response_model=Job)
def get_job(job_id: str, jobs: JobsDep, tenant: TenantDep) -> Job:
    return job_view(load_job(jobs, tenant, job_id))


@router.post("/{job_id}/cancel", response_model=Job,
             summary="Cooperative cancel: the worker stops at the next tick and stores a final checkpoint")
def cancel_job(job_id: str, jobs: JobsDep, tenant: TenantDep) -> Job:
    rec = load_job(jobs, tenant, job_id)
    if rec.status in (JobStatus.succeeded, JobStatus.failed):
        raise HTTPException(409, f"job {job_id} already {rec.status.value}; there is nothing to cancel")
    rec = jobs.cancel(tenant, job_id) or rec  # a repeated cancel is a no-op
    if rec.status in (JobStatus.succeeded, JobStatus.failed):  # it ended while we were asking
        raise HTTPException(409, f"job {job_id} already {rec.status.value}; there is nothing to cancel")
    return job_view(rec)


@router.delete("/{job_id}", status_code=204, response_class=Response,
               summary="Delete a finished job with its checkpoints, samples and metrics (409 while it runs: "
                       "cancel it first); its storage is credited at once")
def delete_job(job_id: str, request: Request, jobs: JobsDep, store: StoreDep, tenant: TenantDep) -> Response:
    rec = load_job(jobs, tenant, job_id)
    try:
        deleted = rec.terminal and jobs.delete(tenant, job_id)
    except JobBusy as e:
        raise HTTPException(409, f"job {job_id} has unfinished projection(s) {', '.join(e.ids)}; cancel them "
                                 f"(POST /v1/jobs/{job_id}/projections/ID/cancel) or wait, then delete the job") from None
    if not deleted:
        raise HTTPException(409, f"job {job_id} is {rec.status.value}; cancel it (POST /v1/jobs/{job_id}/cancel) "
                                 "and delete it once it has ended")
    try:
        purge_deleted(request.app.state.core.db, store)
    except Exception as e:  # the rows are gone; the sweep removes the objects later
        log.warning("objects of deleted job %s not removed yet: %s", job_id, e)
    return Response(status_code=204)


@router.get("/{job_id}/metrics", response_model=Metrics,
            summary="Tick series (losses, DIG, gradient norms, augment p, sec/kimg) and snapshot metrics")
def job_metrics(job_id: str, jobs: JobsDep, tenant: TenantDep) -> Metrics:
    rec = load_job(jobs, tenant, job_id)
    return Metrics(job_id=rec.id, ticks=jobs.ticks(rec.id), snapshots=jobs.snapshots(rec.id))


@router.get("/{job_id}/events", summary="Server-sent events: `state` on each status change, `tick` per tick, "
            "`end` at a terminal state; `idle` (then the stream closes: reconnect with since_tick) after "
            "events_idle_timeout_s without news", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def job_events(
    job_id: str, request: Request, jobs: JobsDep, core: CoreDep, settings: SettingsDep, tenant: TenantDep,
    since_tick: Annotated[int, Query(ge=0, le=2**31, description="replay ticks after this one")] = 0,
) -> StreamingResponse:
    rec = await anyio.to_thread.run_sync(load_job, jobs, tenant, job_id)
    slot = await acquire_stream_slot(core, tenant, settings)
    pacer = StreamPacer(request, core, slot, settings.events_idle_timeout_s)
    return event_stream_response(_events(pacer, rec, since_tick))


async def _events(pacer: StreamPacer, rec: JobRecord, since_tick: int) -> AsyncIterator[bytes]:
    jobs = pacer.core.jobs
    last_state: tuple | None = None
    last_tick = since_tick
    async with pacer:
        while True:
            state = (rec.status, rec.latest_checkpoint, rec.error)
            if state != last_state:
                yield sse("state", job_view(rec).model_dump(mode="json"))
                last_state = state
                pacer.news()
            newest = int((rec.latest_tick or {}).get("tick") or 0)
            if newest > last_tick:
                for t in await anyio.to_thread.run_sync(jobs.ticks, rec.id, last_tick):
                    yield sse("tick", t, str(t.get("tick")))
                    last_tick = max(last_tick, int(t.get("tick") or 0))
                pacer.news()
            if rec.terminal:
                yield sse("end", {"status": rec.status.value})
                return
            if pacer.idle_expired:  # free the slot; the client reconnects with since_tick
                yield sse("idle", {"after_s": pacer.idle_timeout_s, "since_tick": last_tick})
                return
            if keep_alive := pacer.keep_alive():
                yield keep_alive
            if not await pacer.wait():
                return
            fresh = await anyio.to_thread.run_sync(jobs.find, rec.tenant, rec.id)
            if fresh is None:  # deleted meanwhile
                return
            rec = fresh


@router.get("/{job_id}/checkpoints", response_model=CheckpointList, summary="Stored checkpoints, oldest first")
def list_checkpoints(job_id: str, jobs: JobsDep, tenant: TenantDep) -> CheckpointList:
    return CheckpointList(data=jobs.checkpoints(load_job(jobs, tenant, job_id).id))


@router.get("/{job_id}/checkpoints/{name}", summary="Download a checkpoint (`latest`, `best` or a name); "
            "?redirect=true answers 307 to a presigned URL when the storage has them",
            response_class=StreamingResponse,
            responses={200: {"content": {"application/octet-stream": {}}}, 307: {"description": "presigned URL"}})
def download_checkpoint(job_id: str, name: str, jobs: JobsDep, store: StoreDep, tenant: TenantDep,
                        settings: SettingsDep, redirect: bool = False) -> Response:
    rec = load_job(jobs, tenant, job_id)
    ckpt = require_checkpoint(jobs, rec, name, none_yet=404)
    if redirect:
        url = store.presigned_get_url(ckpt.object_key, expires_seconds=settings.presign_expires_s)
        if url:
            return RedirectResponse(url, status_code=307)
    return StreamingResponse(
        store.iter_bytes(ckpt.object_key), media_type="application/octet-stream",
        headers={"Content-Length": str(ckpt.size), "Content-Disposition": f'attachment; filename="{rec.id}-{ckpt.name}"',
                 "X-Checksum-SHA256": ckpt.sha256},
    )


@router.get("/{job_id}/checkpoints/{name}/grid", summary="The sample grid stored with a checkpoint",
            response_class=Response, responses={200: {"content": {"image/png": {}}}})
def checkpoint_grid(job_id: str, name: str, jobs: JobsDep, store: StoreDep, tenant: TenantDep) -> Response:
    rec = load_job(jobs, tenant, job_id)
    ckpt = require_checkpoint(jobs, rec, name, none_yet=404)
    if not ckpt.grid_key:
        raise HTTPException(404, f"checkpoint {ckpt.name} has no stored grid")
    return Response(store.get_bytes(ckpt.grid_key), media_type="image/png")

