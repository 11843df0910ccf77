"""Projections: upload photos, and a light-queue worker finds the latent of each in a job checkpoint's W (or W+)
space in the background (worker/projection.py), with progress; each result is saved as a latent.

    POST /v1/jobs/{job_id}/projections            multipart: file(s) + checkpoint, steps, w_plus, distance, seed
    GET  /v1/jobs/{job_id}/projections/{id}        status, progress (steps, ETA), per-image distance and latent id
    GET  .../{id}/events                           server-sent `state` events until `end`
    GET  .../{id}/target.png | reconstruction.png | progress.gif ?index=i

The upload is checked and prepared here (decoded in the upload pool, centre-cropped and resized to the
generator's resolution, stored as PNG); the optimisation never runs inside a request.
"""

from __future__ import annotations

import io
import logging
import unicodedata
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from service.api.dataset_ingest import UploadTooLarge, _limited
from service.api.deps import CeleryDep, CoreDep, JobsDep, PrincipalDep, SettingsDep, TenantDep, in_upload_pool
from service.api.event_stream import StreamPacer, acquire_stream_slot, event_stream_response, sse
from service.api.latent_ops import projection_repo, require_stylegan2_job
from service.api.lookups import load_job, require_checkpoint
from service.api.pagination import PageCursor, PageLimit, check_cursor, page_fields
from service.api.schemas.common import ERROR_RESPONSES
from service.api.schemas.projections import Projection, ProjectionImage, ProjectionList, ProjectionProgress
from service.api.storage_checks import purge_quietly
from service.core import projections as proj
from service.core.ids import is_valid_id, new_id
from service.core.jobs import JobRecord
from service.core.projections import ProjectionRecord, ProjectionRepo, ProjectionStatus
from service.core.queue import enqueue_projection
from service.core.services import Core
from service.core.settings import Settings

router = APIRouter(prefix="/v1/jobs/{job_id}/projections", tags=["projections"], responses=ERROR_RESPONSES)
log = logging.getLogger(__name__)
ProjectionsDep = Annotated[ProjectionRepo, Depends(projection_repo)]

HOW_TO = ("send multipart/form-data with one or more image fields 'file' (curl -F file=@face.jpg), and optionally "
          "the fields checkpoint, steps, w_plus, distance, seed")
FIELDS = ("checkpoint", "steps", "w_plus", "distance", "seed")

_DEFAULTS = Settings.model_fields  # the OpenAPI document states the default limits
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "array", "items": {"type": "string", "format": "binary"},
                                 "description": f"1 to {_DEFAULTS['max_projection_images'].default} (DIGGAN_MAX_PROJECTION_IMAGES) images (PNG, JPEG, WebP, ...); each is "
                                                "centre-cropped to a square and resized to the generator's resolution"},
                        "checkpoint": {"type": "string", "default": "latest"},
                        "steps": {"type": "integer", "default": 1000, "minimum": 1, "maximum": _DEFAULTS["max_projection_steps"].default},
                        "w_plus": {"type": "boolean", "default": False},
                        "distance": {"type": "string", "default": "inception+pixel",
                                     "enum": ["inception+pixel", "inception", "pixel", "discriminator"]},
                        "seed": {"type": "integer", "default": 303},
                    },
                    "required": ["file"],
                }
            }
        },
    }
}


# ------------------------------------------------------------------------------------------ views


def projection_view(p: ProjectionRecord, base_url: str) -> Projection:
    base = f"{base_url}/v1/jobs/{p.job_id}/projections/{p.id}"
    images = []
    for im in p.images:
        i, done = int(im["index"]), im.get("status") == "done"
        images.append(ProjectionImage(
            index=i, filename=im.get("filename"), width=im.get("width", 0), height=im.get("height", 0),
            status="done" if done else "pending", distance=im.get("distance"),
            initial_distance=im.get("initial_distance"), pixel_mse=im.get("pixel_mse"), steps=im.get("steps"),
            latent_id=im.get("latent_id"), target_url=f"{base}/target.png?index={i}",
            reconstruction_url=f"{base}/reconstruction.png?index={i}" if done else None,
            progress_gif_url=f"{base}/progress.gif?index={i}" if done else None))
    total = max(1, p.total_steps)
    fraction = 1.0 if p.status == ProjectionStatus.succeeded else min(1.0, p.steps_done / total)
    eta = 0.0 if p.status == ProjectionStatus.succeeded else p.eta_seconds if p.status == ProjectionStatus.running else None
    return Projection(id=p.id, job_id=p.job_id, status=p.status, checkpoint=p.checkpoint,
                      checkpoint_sha256=p.checkpoint_sha256, config=p.config,
                      progress=ProjectionProgress(steps_done=p.steps_done, total_steps=p.total_steps, fraction=fraction,
                                                  eta_seconds=eta, distance=p.distance),
                      images=images, error=p.error, attempt=p.attempt, created_at=p.created_at,
                      updated_at=p.updated_at, started_at=p.started_at, finished_at=p.finished_at,
                      cancel_requested_at=p.cancel_requested_at)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def load_projection(repo: ProjectionRepo, rec: JobRecord, projection_id: str) -> ProjectionRecord:
    p = repo.find(rec.tenant, rec.id, projection_id) if is_valid_id(projection_id, "proj") else None
    if p is None:
        raise HTTPException(404, f"no projection {projection_id!r} in job {rec.id}; list them with "
                                 f"GET /v1/jobs/{rec.id}/projections")
    return p


# ----------------------------------------------------------------------------------------- create


def _settings_from_form(fields: dict[str, str], settings: Any) -> dict[str, Any]:
    """The projection's config from the form fields, with the library's defaults; 422 naming a bad field."""
    from gan_core.latents import DEFAULT_DISTANCE, DISTANCES, ProjectionConfig

    d = ProjectionConfig()
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise HTTPException(422, f"unknown field(s) {', '.join(repr(u[:40]) for u in unknown)}; the fields are "
                                 f"{', '.join(FIELDS)} and the image file(s)")

    def integer(name: str, default: int, lo: int, hi: int) -> int:
        raw = fields.get(name, "").strip()
        if raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise HTTPException(422, f"{name}: expected an integer, got {raw[:40]!r}") from None
        if not lo <= value <= hi:
            raise HTTPException(422, f"{name} must be in [{lo}, {hi}], got {value}")
        return value

    w_plus_raw = fields.get("w_plus", "").strip().lower()
    if w_plus_raw not in ("", "true", "false"):
        raise HTTPException(422, f"w_plus: expected true or false, got {w_plus_raw[:40]!r}")
    distance = fields.get("distance", "").strip() or DEFAULT_DISTANCE
    if distance not in DISTANCES:
        raise HTTPException(422, f"unknown distance {distance[:40]!r}; choose one of {', '.join(DISTANCES)} "
                                 f"(default {DEFAULT_DISTANCE}; 'pixel' is the fast one on a CPU)")
    return {"steps": integer("steps", d.steps, 1, settings.max_projection_steps), "w_plus": w_plus_raw == "true",
            "distance": distance, "seed": integer("seed", d.seed, 0, 2**31 - 1)}


def _clean_filename(name: str | None) -> str | None:
    if not name:
        return None
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C")  # no control/format characters
    return base[:200] or None


def image_size(data: bytes, max_pixels: int, what: str) -> tuple[int, int]:
    """The upload's declared size from its header (nothing decoded); 422 for what is not an image we can read,
    or one too large."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            width, height = im.size
    except (UnidentifiedImageError, OSError, ValueError):
        raise HTTPException(422, f"{what} is not an image this server can read (PNG, JPEG, WebP, BMP, GIF, TIFF)") from None
    if width * height > max_pixels:
        raise HTTPException(422, f"{what} is {width}x{height} = {width * height:,} pixels; at most {max_pixels:,} "
                                 "are accepted: downscale it first")
    if min(width, height) < 8:
        raise HTTPException(422, f"{what} is {width}x{height}; give an image at least 8 pixels on each side")
    return width, height


def prepare_target(data: bytes, resolution: int, what: str) -> bytes:
    """An upload as the target PNG: centre crop, LANCZOS resize to the generator's resolution (NVlabs'
    projector), as gan_core.latents.load_target does it."""
    from PIL import Image

    from gan_core.latents import load_target

    try:
        target = load_target(io.BytesIO(data), resolution)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise HTTPException(422, f"{what} could not be decoded ({type(e).__name__}: {str(e)[:200]})") from None
    buf = io.BytesIO()
    Image.fromarray(target.permute(1, 2, 0).numpy()).save(buf, format="PNG")
    return buf.getvalue()


async def _receive(request: Request, settings: Any) -> tuple[list[tuple[str | None, bytes]], dict[str, str]]:
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise HTTPException(415, f"unsupported content type {ctype[:100] or 'none'!r}; {HOW_TO}")
    declared = request.headers.get("content-length")
    limit = settings.max_projection_upload_bytes
    too_large = HTTPException(413, f"the upload is larger than {limit // (1 << 20)} MiB; send fewer or smaller "
                                   f"images (at most {settings.max_projection_images} per projection)")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large
    parser = MultiPartParser(request.headers, _limited(request.stream(), limit),
                             max_files=settings.max_projection_images + 1, max_fields=len(FIELDS) + 2)
    try:
        form = await parser.parse()
    except UploadTooLarge:
        raise too_large from None
    except MultiPartException as e:
        raise HTTPException(400, f"malformed multipart body ({e}); {HOW_TO}") from None
    files: list[tuple[str | None, bytes]] = []
    fields: dict[str, str] = {}
    try:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key not in ("file", "files"):
                    raise HTTPException(422, f"file field {key[:40]!r}: send images as 'file'; {HOW_TO}")
                files.append((value.filename, await value.read()))
            else:
                fields[key] = value
    finally:
        await form.close()
    if not files:
        raise HTTPException(422, f"no image received; {HOW_TO}")
    if len(files) > settings.max_projection_images:
        raise HTTPException(422, f"at most {settings.max_projection_images} images per projection, got {len(files)}")
    return files, fields


def _prepare_all(core: Core, tenant: str, settings: Any, files: list[tuple[str | None, bytes]], resolution: int
                 ) -> list[tuple[bytes, int, int]]:
    """Every upload checked from its header, then decoded and prepared while holding the tenant's share of the
    pixels being decoded at once (shared with dataset uploads, across replicas; 429 when it is spent)."""
    whats = [f"file {i} ({_clean_filename(name) or 'unnamed'})" for i, (name, _) in enumerate(files)]
    sizes = [image_size(data, settings.max_image_pixels, what) for (_, data), what in zip(files, whats)]
    pixels = sum(w * h for w, h in sizes)
    with core.slots.hold(tenant, "decode", settings.max_decode_pixels_per_tenant, ttl_s=600, weight=pixels):
        return [(prepare_target(data, resolution, what), w, h)
                for (_, data), what, (w, h) in zip(files, whats, sizes)]


@router.post("", status_code=202, response_model=Projection, openapi_extra=_UPLOAD_BODY,
             summary="Project image(s) into the checkpoint's W space in the background; follow it with GET or /events")
async def create_projection(job_id: str, request: Request, settings: SettingsDep, core: CoreDep, jobs: JobsDep,
                            celery: CeleryDep, tenant: TenantDep, principal: PrincipalDep) -> Projection:
    rec = await run_in_threadpool(load_job, jobs, tenant, job_id)  # 404 before the body is read
    require_stylegan2_job(rec)
    if not rec.latest_checkpoint:  # 409 "no checkpoint yet" before the upload is read
        await run_in_threadpool(require_checkpoint, jobs, rec, "latest")
    files, fields = await _receive(request, settings)
    config = _settings_from_form(fields, settings)
    ckpt = await run_in_threadpool(require_checkpoint, jobs, rec, fields.get("checkpoint", "").strip() or "latest")
    resolution = int((rec.config.get("network") or {}).get("resolution") or 0)
    prepared = await in_upload_pool(request, _prepare_all, core, tenant, settings, files, resolution)
    pid = new_id("proj")
    images = [{"index": i, "filename": _clean_filename(name), "width": w, "height": h, "status": "pending",
               "target_key": proj.target_key(tenant, rec.id, pid, i)}
              for i, ((name, _), (_, w, h)) in enumerate(zip(files, prepared))]
    record = ProjectionRecord(id=pid, tenant=tenant, job_id=rec.id, checkpoint=ckpt.name,
                              checkpoint_key=ckpt.object_key, checkpoint_sha256=ckpt.sha256, config=config,
                              images=images, total_steps=config["steps"] * len(images))
    repo = core.projections
    # 429 past the tenant's unfinished-projection limit (its heavy-request limit) or storage quota.
    created = await run_in_threadpool(repo.create, core.store, record, [p for p, _, _ in prepared], principal.quotas,
                                      settings.max_heavy_requests_per_tenant)
    try:
        await run_in_threadpool(enqueue_projection, celery, tenant, pid)
        await run_in_threadpool(repo.mark_enqueued, pid)
    except Exception as e:  # the row is queued: the sweep sends it once the broker answers
        log.warning("projection %s recorded but not yet sent to the queue (%s); the sweep will send it", pid, e)
    fresh = await run_in_threadpool(repo.find, tenant, rec.id, pid)
    return projection_view(fresh or created, _base(request))


# ------------------------------------------------------------------------------------------ reads


@router.get("", response_model=ProjectionList, summary="A job's projections, newest first")
def list_projections(
    job_id: str, request: Request, jobs: JobsDep, repo: ProjectionsDep, tenant: TenantDep,
    limit: PageLimit = 20,
    cursor: PageCursor = None,
) -> ProjectionList:
    rec = load_job(jobs, tenant, job_id)
    check_cursor(cursor, "proj")
    page, next_cursor = repo.list(tenant, rec.id, limit=limit, cursor=cursor)
    return ProjectionList(data=[projection_view(p, _base(request)) for p in page], **page_fields(next_cursor))


@router.get("/{projection_id}", response_model=Projection,
            summary="Status, progress (steps done, ETA, current distance) and each image's result")
def get_projection(job_id: str, projection_id: str, request: Request, jobs: JobsDep, repo: ProjectionsDep,
                   tenant: TenantDep) -> Projection:
    return projection_view(load_projection(repo, load_job(jobs, tenant, job_id), projection_id), _base(request))


def _image(p: ProjectionRecord, index: int, key: str) -> str:
    if not 0 <= index < len(p.images):
        raise HTTPException(404, f"projection {p.id} has images 0..{len(p.images) - 1}, not {index}")
    image = p.images[index]
    if key != "target_key" and image.get("status") != "done":
        raise HTTPException(404, f"image {index} of projection {p.id} is not projected yet (the projection is "
                                 f"{p.status.value}); follow GET .../projections/{p.id} until it is done")
    return image[key]


def _file(core: Core, repo: ProjectionRepo, jobs: Any, tenant: str, job_id: str, projection_id: str, index: int,
          key: str) -> bytes:
    p = load_projection(repo, load_job(jobs, tenant, job_id), projection_id)
    return core.store.get_bytes(_image(p, index, key))


IndexQuery = Annotated[int, Query(ge=0, le=1000, description="which image of the projection (0 = the first)")]


@router.get("/{projection_id}/target.png", response_class=Response, responses={200: {"content": {"image/png": {}}}},
            summary="An uploaded image as projected: centre-cropped and resized to the generator's resolution")
def projection_target(job_id: str, projection_id: str, core: CoreDep, jobs: JobsDep, repo: ProjectionsDep,
                      tenant: TenantDep, index: IndexQuery = 0) -> Response:
    return Response(_file(core, repo, jobs, tenant, job_id, projection_id, index, "target_key"), media_type="image/png")


@router.get("/{projection_id}/reconstruction.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}}},
            summary="The projected latent rendered (what its saved latent gives with psi 1)")
def projection_reconstruction(job_id: str, projection_id: str, core: CoreDep, jobs: JobsDep, repo: ProjectionsDep,
                              tenant: TenantDep, index: IndexQuery = 0) -> Response:
    return Response(_file(core, repo, jobs, tenant, job_id, projection_id, index, "reconstruction_key"),
                    media_type="image/png")


@router.get("/{projection_id}/progress.gif", response_class=Response, responses={200: {"content": {"image/gif": {}}}},
            summary="The optimisation as an animated GIF: target | current image, ending on the result")
def projection_gif(job_id: str, projection_id: str, core: CoreDep, jobs: JobsDep, repo: ProjectionsDep,
                   tenant: TenantDep, index: IndexQuery = 0) -> Response:
    return Response(_file(core, repo, jobs, tenant, job_id, projection_id, index, "gif_key"), media_type="image/gif")


# --------------------------------------------------------------------------------- cancel, delete


@router.post("/{projection_id}/cancel", response_model=Projection,
             summary="Stop a projection: a queued one ends at once, a running one at its next step (finished "
                     "images and their latents are kept)")
def cancel_projection(job_id: str, projection_id: str, request: Request, jobs: JobsDep, repo: ProjectionsDep,
                      tenant: TenantDep) -> Projection:
    rec = load_job(jobs, tenant, job_id)
    p = load_projection(repo, rec, projection_id)
    if p.status in (ProjectionStatus.succeeded, ProjectionStatus.failed):
        raise HTTPException(409, f"projection {p.id} already {p.status.value}; there is nothing to cancel")
    p = repo.cancel(tenant, rec.id, p.id) or p
    return projection_view(p, _base(request))


@router.delete("/{projection_id}", status_code=204, response_class=Response,
               summary="Delete a finished projection and its files (the latents it saved stay); 409 while it runs")
def delete_projection(job_id: str, projection_id: str, core: CoreDep, jobs: JobsDep, repo: ProjectionsDep,
                      tenant: TenantDep) -> Response:
    rec = load_job(jobs, tenant, job_id)
    p = load_projection(repo, rec, projection_id)
    if not p.terminal or not repo.delete(tenant, rec.id, p.id):
        raise HTTPException(409, f"projection {p.id} is {p.status.value}; cancel it (POST .../projections/{p.id}/"
                                 "cancel) and delete it once it has ended")
    purge_quietly(core)
    return Response(status_code=204)


# ----------------------------------------------------------------------------------------- events


@router.get("/{projection_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}},
            summary="Server-sent events: `state` (the projection) whenever its status or progress changes, `end` at "
                    "the end; `idle` (then the stream closes) after events_idle_timeout_s without news")
async def projection_events(job_id: str, projection_id: str, request: Request, core: CoreDep, jobs: JobsDep,
                            repo: ProjectionsDep, settings: SettingsDep, tenant: TenantDep) -> StreamingResponse:
    rec = await anyio.to_thread.run_sync(load_job, jobs, tenant, job_id)
    p = await anyio.to_thread.run_sync(load_projection, repo, rec, projection_id)
    slot = await acquire_stream_slot(core, tenant, settings)
    pacer = StreamPacer(request, core, slot, settings.events_idle_timeout_s)
    return event_stream_response(_events(pacer, repo, p, _base(request)))


async def _events(pacer: StreamPacer, repo: ProjectionRepo, p: ProjectionRecord, base: str) -> AsyncIterator[bytes]:
    last = None
    async with pacer:
        while True:
            state = (p.status, p.steps_done, p.distance, sum(i.get("status") == "done" for i in p.images), p.error)
            if state != last:
                yield sse("state", projection_view(p, base).model_dump(mode="json"))
                last = state
                pacer.news()
            if p.terminal:
                yield sse("end", {"status": p.status.value})
                return
            if pacer.idle_expired:
                yield sse("idle", {"after_s": pacer.idle_timeout_s})
                return
            if keep_alive := pacer.keep_alive():
                yield keep_alive
            if not await pacer.wait():
                return
            fresh = await anyio.to_thread.run_sync(repo.find, p.tenant, p.job_id, p.id)
            if fresh is None:  # deleted meanwhile
                return
            p = fresh
