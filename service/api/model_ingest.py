"""Upload -> validated, converted, stored pretrained model.

Same rules as datasets (service/api/dataset_ingest.py): the size limit is enforced while the body
streams in, nothing is stored until gan_core has accepted the file, and the record is published
last (what was written is removed again if storing fails half way).

The file is parsed in a separate, resource-limited process (gan_core.interop.sandbox): an NVlabs pkl
by an allow-list unpickler that never runs the code embedded in it, a .pt by torch.load(weights_only=True),
each after size, shape and pickle-structure checks. What is stored is our own checkpoint format
(config + G + D + G_ema), so workers never unpickle an upload again.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path

import anyio
from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from service.api.dataset_ingest import UploadTooLarge, _clean_name, _limited
from service.core import object_keys as keys
from service.core.ids import new_id
from service.core.quotas import Quotas
from service.core.settings import Settings
from service.core.storage import ObjectStore
from service.core.uploads import ModelRecord, ModelRepo

log = logging.getLogger(__name__)

HOW_TO = ("send the file as multipart/form-data field 'file' (curl -F file=@ffhq.pkl), or as the raw request "
          "body with Content-Type: application/octet-stream (curl --data-binary @ffhq.pkl)")


def _too_large(settings: Settings) -> HTTPException:
    mib = settings.max_model_upload_bytes / (1 << 20)
    return HTTPException(413, f"the model is larger than the {mib:.0f} MiB limit for uploaded models")


async def receive_model(request: Request, settings: Settings, dest: Path) -> tuple[str | None, str]:
    """Stream the upload into `dest`, enforcing the size limit as bytes arrive.
    Returns (name from the form or ?name=, the uploaded file's name)."""
    ctype = request.headers.get("content-type", "")
    limit = settings.max_model_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(settings)
    if ctype.startswith("multipart/form-data"):
        parser = MultiPartParser(request.headers, _limited(request.stream(), limit), max_files=2, max_fields=4)
        try:
            form = await parser.parse()
        except UploadTooLarge:
            raise _too_large(settings) from None
        except MultiPartException as e:
            raise HTTPException(400, f"malformed multipart body: {e}; {HOW_TO}") from None
        upload, name = None, None
        try:
            for key, value in form.multi_items():
                if key == "file" and isinstance(value, UploadFile):
                    if upload is not None:
                        raise HTTPException(400, f"send one model per upload; {HOW_TO}")
                    upload = value
                elif key == "name" and isinstance(value, str):
                    name = value
            if upload is None:
                raise HTTPException(400, f"no file received; {HOW_TO}")
            await run_in_threadpool(_copy, upload, dest)
            return name, upload.filename or "model"
        finally:
            await form.close()
    if ctype.split(";")[0].strip() in ("application/octet-stream", ""):
        try:
            async with await anyio.open_file(dest, "wb") as out:  # opens, writes and closes in worker threads
                async for chunk in _limited(request.stream(), limit):
                    await out.write(chunk)
        except UploadTooLarge:
            raise _too_large(settings) from None
        return request.query_params.get("name"), "model"
    raise HTTPException(415, f"unsupported content type {ctype!r}; {HOW_TO}")


def _copy(upload: UploadFile, dest: Path) -> None:
    upload.file.seek(0)
    with open(dest, "wb") as out:
        while chunk := upload.file.read(1 << 20):
            out.write(chunk)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def ingest_model(upload: Path, name: str | None, filename: str, tenant: str, settings: Settings,
                 store: ObjectStore, repo: ModelRepo, quotas: Quotas | None) -> ModelRecord:
    """Blocking (run it off the event loop): parse, validate and convert in a resource-limited child process
    (gan_core.interop.sandbox; this process only reads its small, validated result), then store and publish."""
    from gan_core.config import NetworkConfig, TrainConfig, validate_config
    from gan_core.interop.errors import PretrainedError
    from gan_core.interop.sandbox import ModelUploadLimits, convert_model_upload

    shown = _clean_name(filename, "the upload")[:80]
    if upload.stat().st_size == 0:
        raise HTTPException(422, f"{shown} is empty; {HOW_TO}")
    model_id = new_id("model")
    with tempfile.TemporaryDirectory(prefix="diggan-model-") as tmp:
        weights = Path(tmp) / "model.pt"
        limits = ModelUploadLimits(max_upload_bytes=settings.max_model_upload_bytes,
                                   memory_bytes=settings.model_convert_memory_bytes,
                                   wall_seconds=settings.model_convert_timeout_s)
        try:
            converted = convert_model_upload(upload, weights, limits, label=shown)
        except PretrainedError as e:
            raise HTTPException(422, str(e)) from None
        net = NetworkConfig(**converted.network)  # within gan_core.interop.bounds already
        try:
            validate_config(TrainConfig(network=net))
        except ValueError as e:
            raise HTTPException(422, f"{shown} holds a network this service cannot train: {e}") from None
        if net.img_channels != 3:
            raise HTTPException(422, f"{shown} makes {net.img_channels}-channel images; datasets here are RGB (3)")
        rec = ModelRecord(
            id=model_id, tenant=tenant, name=_clean_name(name, Path(shown).stem or "model"), kind=converted.kind,
            resolution=converted.resolution, network=dict(converted.network),
            has_discriminator=converted.has_discriminator, notes=list(converted.notes), sha256=converted.sha256,
            size_bytes=converted.size, original_bytes=upload.stat().st_size, original_sha256=_sha256_file(upload),
        )
        files = [(keys.model_weights(tenant, model_id), weights, "application/octet-stream")]
        return repo.create(rec, files, store, quotas)
