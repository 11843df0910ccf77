"""Jobs: create (idempotent), list, get, cancel, metrics, events (SSE), checkpoints."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from typing import Annotated, AsyncIterator

import anyio
from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, StreamingResponse

from service import keys
from service.auth import Principal, check_new_job, check_storage, quota_lock
from service.deps import CeleryDep, DatasetsDep, JobsDep, PrincipalDep, SettingsDep, StoreDep, TenantDep
from service.ids import is_valid_id, new_id
from service.jobs.config import JobConfigError, fit_config_to_dataset, resolve_config_dict
from service.jobs.records import CheckpointInfo, JobRecord, JobRepo, JobStatus, Progress, utcnow
from service.models.sources import resolve_init_from
from service.queue import enqueue_train
from service.schemas.common import ERROR_RESPONSES
from service.schemas.jobs import CheckpointList, Job, JobCreate, JobList, Metrics
from service.storage import LocalStore, ObjectNotFound

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES)

SSE_POLL_S = 0.5
SSE_KEEPALIVE_S = 15.0


def job_view(rec: JobRecord) -> Job:
    return Job.model_validate(rec.model_dump())


def load_job(jobs: JobRepo, tenant: str, job_id: str) -> JobRecord:
    rec = jobs.find(tenant, job_id) if is_valid_id(job_id, "job") else None
    if rec is None:
        raise HTTPException(404, f"no job {job_id!r}; list yours with GET /v1/jobs")
    return rec


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@router.post("", status_code=202, response_model=Job,
             summary="Start a fine-tuning job (send an Idempotency-Key header to make retries safe)")
def create_job(
    body: JobCreate, request: Request, response: Response, settings: SettingsDep, store: StoreDep, jobs: JobsDep,
    datasets: DatasetsDep, celery: CeleryDep, tenant: TenantDep, principal: PrincipalDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Job:
    body_hash = _sha(json.dumps(body.model_dump(mode="json"), sort_keys=True))
    idem_key = keys.idempotency(tenant, _sha(idempotency_key)) if idempotency_key else None
    # One creator per key within this process (cross-process races are for issue 6's quota store).
    with request.app.state.idempotency_lock if idem_key else contextlib.nullcontext():
        if idem_key:
            try:
                prior = store.get_json(idem_key)
            except ObjectNotFound:
                prior = None
            if prior:
                if prior.get("body_hash") != body_hash:
                    raise HTTPException(409, "this Idempotency-Key was already used with a different request body; "
                                             "use a new key for a different job")
                rec = jobs.find(tenant, prior["job_id"])
                if rec is not None:
                    response.status_code = 200
                    response.headers["Idempotent-Replayed"] = "true"
                    return job_view(rec)
        return _create(body, body_hash, idem_key, settings, store, jobs, datasets, celery, tenant, principal,
                       models=request.app.state.models)


def _create(body: JobCreate, body_hash: str, idem_key: str | None, settings, store, jobs: JobRepo, datasets,
            celery, tenant: str, principal: Principal, models=None) -> Job:
    dataset = datasets.find(tenant, body.dataset_id) if is_valid_id(body.dataset_id, "ds") else None
    if dataset is None:
        raise HTTPException(404, f"no dataset {body.dataset_id!r}; upload one with POST /v1/datasets")
    pretrained_network, init_from = None, None
    if body.init_from is not None:  # 404/409 when the model or checkpoint does not exist
        pretrained_network, init_from = resolve_init_from(body.init_from, tenant, models, jobs)
    try:
        config = resolve_config_dict(body, settings, pretrained_network)
        config = fit_config_to_dataset(config, dataset.num_classes)  # biggan: num_classes from the dataset's labels
    except JobConfigError as e:
        raise HTTPException(422, str(e)) from None
    # Quotas (429): checked and the job recorded under one lock, so two racing creates cannot both fit.
    with quota_lock() if principal.quotas is not None else contextlib.nullcontext():
        check_storage(store, principal)  # checkpoints will add to it: refuse new jobs once it is full
        check_new_job(jobs, principal, float(config["kimg"]))
        return _record_and_enqueue(body, config, idem_key, body_hash, store, jobs, celery, tenant, init_from)


def _record_and_enqueue(body: JobCreate, config: dict, idem_key: str | None, body_hash: str, store, jobs: JobRepo,
                        celery, tenant: str, init_from: dict | None = None) -> Job:
    rec = JobRecord(
        id=new_id("job"), tenant=tenant, dataset_id=body.dataset_id, config=config, init_from=init_from,
        request=body.model_dump(mode="json", exclude_unset=True),
        progress=Progress(total_kimg=config["kimg"]), enqueued_at=utcnow(),
        idempotency_key_hash=idem_key.rsplit("/", 1)[-1][:-5] if idem_key else None,
    )
    jobs.create(rec)
    try:
        enqueue_train(celery, tenant, rec.id)
    except Exception as e:  # broker down: leave no job behind, so a retry starts clean
        jobs.delete(tenant, rec.id)
        raise HTTPException(503, f"the job queue is unreachable ({type(e).__name__}); retry shortly") from None
    if idem_key:
        store.put_json(idem_key, {"job_id": rec.id, "body_hash": body_hash, "created_at": rec.created_at.isoformat()})
    return job_view(rec)


@router.get("", response_model=JobList, summary="Your jobs, newest first, with cursor pagination")
def list_jobs(
    jobs: JobsDep, tenant: TenantDep,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=64, description="`next_cursor` of the previous page")] = None,
) -> JobList:
    if cursor is not None and not is_valid_id(cursor, "job"):
        raise HTTPException(422, f"invalid cursor {cursor!r}; pass the `next_cursor` of a previous page")
    page, next_cursor = jobs.list(tenant, status=status, limit=limit, cursor=cursor)
    return JobList(data=[job_view(r) for r in page], next_cursor=next_cursor, has_more=next_cursor is not None)


@router.get("/{job_id}", response_model=Job)
async def get_job(job_id: str, store: StoreDep, tenant: TenantDep) -> Response:
    # The hot polling path. Record bytes -> Job JSON entirely in pydantic-core; a local file is read
    # inline (tens of microseconds, cheaper than a threadpool hop), anything networked in the threadpool.
    if not is_valid_id(job_id, "job"):
        raise HTTPException(404, f"no job {job_id!r}; list yours with GET /v1/jobs")
    key = keys.job_record(tenant, job_id)
    try:
        raw = store.get_bytes(key) if isinstance(store, LocalStore) else await run_in_threadpool(store.get_bytes, key)
    except ObjectNotFound:
        raise HTTPException(404, f"no job {job_id!r}; list yours with GET /v1/jobs") from None
    return Response(Job.model_validate_json(raw).model_dump_json(), media_type="application/json")


@router.post("/{job_id}/cancel", response_model=Job,
             summary="Cooperative cancel: the worker stops at the next tick and stores a final checkpoint")
def cancel_job(job_id: str, jobs: JobsDep, tenant: TenantDep) -> Job:
    rec = load_job(jobs, tenant, job_id)
    if rec.status == JobStatus.canceled or rec.status == JobStatus.cancelling:
        return job_view(rec)  # a repeated cancel is a no-op
    if rec.terminal:
        raise HTTPException(409, f"job {job_id} already {rec.status.value}; there is nothing to cancel")
    # The marker first: it survives a racing worker write of the record (see jobs/records.py).
    jobs.request_cancel(tenant, job_id)

    def mark(r: JobRecord) -> bool:
        if r.terminal or r.status == JobStatus.cancelling:
            return False
        r.cancel_requested_at = utcnow()
        if r.status == JobStatus.queued:  # no worker has it: nothing to stop, no checkpoint to save
            r.status, r.finished_at = JobStatus.canceled, utcnow()
        else:
            r.status = JobStatus.cancelling
        return True

    return job_view(jobs.update(tenant, job_id, mark))


@router.get("/{job_id}/metrics", response_model=Metrics,
            summary="Tick series (losses, DIG, gradient norms, augment p, sec/kimg) and snapshot metrics")
def job_metrics(job_id: str, jobs: JobsDep, tenant: TenantDep) -> Metrics:
    rec = load_job(jobs, tenant, job_id)
    series = jobs.get_series(tenant, rec.id)
    return Metrics(job_id=rec.id, ticks=series["ticks"], snapshots=series["snapshots"])


def _sse(event: str, data: object, event_id: str | None = None) -> bytes:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, default=str, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


@router.get("/{job_id}/events", summary="Server-sent events: `state` on each status change, `tick` per tick, "
            "`end` at a terminal state", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def job_events(
    job_id: str, request: Request, jobs: JobsDep, tenant: TenantDep,
    since_tick: Annotated[int, Query(ge=0, description="replay ticks after this one")] = 0,
) -> StreamingResponse:
    rec = await anyio.to_thread.run_sync(load_job, jobs, tenant, job_id)
    return StreamingResponse(_events(request, jobs, rec, since_tick), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _events(request: Request, jobs: JobRepo, rec: JobRecord, since_tick: int) -> AsyncIterator[bytes]:
    last_state: tuple | None = None
    last_tick = since_tick
    quiet = 0.0
    while True:
        state = (rec.status, rec.latest_checkpoint, rec.error)
        if state != last_state:
            yield _sse("state", job_view(rec).model_dump(mode="json"))
            last_state, quiet = state, 0.0
        newest = int((rec.latest_tick or {}).get("tick") or 0)
        if newest > last_tick:
            series = await anyio.to_thread.run_sync(jobs.get_series, rec.tenant, rec.id)
            for t in series["ticks"]:
                if int(t.get("tick") or 0) > last_tick:
                    yield _sse("tick", t, str(t.get("tick")))
                    last_tick = int(t.get("tick") or 0)
            quiet = 0.0
        if rec.terminal:
            yield _sse("end", {"status": rec.status.value})
            return
        if quiet >= SSE_KEEPALIVE_S:
            yield b": keep-alive\n\n"  # stops proxies from closing an idle stream
            quiet = 0.0
        await asyncio.sleep(SSE_POLL_S)
        quiet += SSE_POLL_S
        if await request.is_disconnected():
            return
        try:
            rec = await anyio.to_thread.run_sync(jobs.get, rec.tenant, rec.id)
        except ObjectNotFound:
            return


@router.get("/{job_id}/checkpoints", response_model=CheckpointList, summary="Stored checkpoints, oldest first")
def list_checkpoints(job_id: str, jobs: JobsDep, tenant: TenantDep) -> CheckpointList:
    return CheckpointList(data=load_job(jobs, tenant, job_id).checkpoints)


def _checkpoint(rec: JobRecord, name: str) -> CheckpointInfo:
    ckpt = rec.checkpoint(name)
    if ckpt is None:
        raise HTTPException(404, f"job {rec.id} has no checkpoint {name!r}; see GET /v1/jobs/{rec.id}/checkpoints")
    return ckpt


@router.get("/{job_id}/checkpoints/{name}", summary="Download a checkpoint (`latest`, `best` or a name); "
            "?redirect=true answers 307 to a presigned URL when the storage has them",
            response_class=StreamingResponse,
            responses={200: {"content": {"application/octet-stream": {}}}, 307: {"description": "presigned URL"}})
def download_checkpoint(job_id: str, name: str, jobs: JobsDep, store: StoreDep, tenant: TenantDep,
                        settings: SettingsDep, redirect: bool = False) -> Response:
    rec = load_job(jobs, tenant, job_id)
    ckpt = _checkpoint(rec, name)
    key = keys.job_checkpoint(tenant, rec.id, ckpt.name)
    if redirect:
        url = store.presigned_get_url(key, expires_seconds=settings.presign_expires_s)
        if url:
            return RedirectResponse(url, status_code=307)
    return StreamingResponse(
        store.iter_bytes(key), media_type="application/octet-stream",
        headers={"Content-Length": str(ckpt.size), "Content-Disposition": f'attachment; filename="{rec.id}-{ckpt.name}"',
                 "X-Checksum-SHA256": ckpt.sha256},
    )


@router.get("/{job_id}/checkpoints/{name}/grid", summary="The sample grid stored with a checkpoint",
            response_class=Response, responses={200: {"content": {"image/png": {}}}})
def checkpoint_grid(job_id: str, name: str, jobs: JobsDep, store: StoreDep, tenant: TenantDep) -> Response:
    rec = load_job(jobs, tenant, job_id)
    ckpt = _checkpoint(rec, name)
    if not ckpt.grid:
        raise HTTPException(404, f"checkpoint {ckpt.name} has no stored grid")
    return Response(store.get_bytes(keys.job_grid(tenant, rec.id, ckpt.grid)), media_type="image/png")
