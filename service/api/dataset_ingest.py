"""Upload -> validated, prepared, stored dataset.

Two rules:
- size is enforced while the body streams in (413 before the whole body is read);
- nothing is stored until gan_core has accepted the upload; the dataset row is reserved (storage
  quota charged) before the objects are written and published after them, and if storing fails
  half way, what was written is removed again (service/core/uploads.py).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import zipfile
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from service.core import object_keys as keys
from service.core.ids import new_id
from service.core.quotas import QuotaExceeded, Quotas
from service.core.settings import Settings
from service.core.storage import ObjectStore
from service.core.uploads import DatasetRecord, DatasetRepo

if TYPE_CHECKING:
    from gan_core.data.loading import Source  # gan_core (torch) is imported lazily, where it is used

log = logging.getLogger(__name__)

HOW_TO = "send multipart/form-data with a field 'file' holding a .zip of images, or repeated fields 'files' holding images"


class UploadTooLarge(Exception):
    pass


@dataclass
class Upload:
    archive: UploadFile | None = None
    files: list[UploadFile] = field(default_factory=list)
    name: str | None = None
    resolution: int | None = None
    class_folders: bool = False  # one top-level folder per class -> labels (for class-conditional jobs)

    async def close(self) -> None:
        for f in ([self.archive] if self.archive else []) + self.files:
            await f.close()


# An AsyncGenerator, not just an AsyncIterator: that is what MultiPartParser takes.
async def _limited(stream: AsyncIterator[bytes], limit: int) -> AsyncGenerator[bytes, None]:
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > limit:
            raise UploadTooLarge()
        yield chunk


def _too_large(settings: Settings) -> HTTPException:
    mib = settings.max_upload_bytes / (1 << 20)
    return HTTPException(413, f"upload is larger than the {mib:.0f} MiB limit; upload fewer or smaller images")


async def receive_upload(request: Request, settings: Settings) -> Upload:
    """Parse the multipart body, streaming, with the size limit enforced as bytes arrive."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise HTTPException(415, f"unsupported content type {ctype or 'none'!r}; {HOW_TO}")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_upload_bytes:
        raise _too_large(settings)
    parser = MultiPartParser(
        request.headers,
        _limited(request.stream(), settings.max_upload_bytes),
        max_files=settings.max_upload_files + 1,
        max_fields=8,
    )
    try:
        form = await parser.parse()
    except UploadTooLarge:
        raise _too_large(settings) from None
    except MultiPartException as e:
        raise HTTPException(400, f"malformed multipart body: {e}; {HOW_TO}") from None
    up = Upload()
    for key, value in form.multi_items():
        if key == "file" and isinstance(value, UploadFile):
            if up.archive is not None:
                await up.close()
                raise HTTPException(400, "send one 'file' (a .zip), or use repeated 'files' for images")
            up.archive = value
        elif key == "files" and isinstance(value, UploadFile):
            up.files.append(value)
        elif key == "name" and isinstance(value, str):
            up.name = value
        elif key == "resolution" and isinstance(value, str) and value.strip():
            up.resolution = _parse_resolution(value)
        elif key == "class_folders" and isinstance(value, str):
            up.class_folders = _parse_bool("class_folders", value)
        elif isinstance(value, UploadFile):
            await value.close()
    if up.archive is None and not up.files:
        raise HTTPException(400, f"no images received; {HOW_TO}")
    if up.archive is not None and up.files:
        await up.close()
        raise HTTPException(400, "send either 'file' (a .zip) or 'files' (images), not both")
    if len(up.files) > settings.max_upload_files:
        await up.close()
        raise HTTPException(413, f"too many files (limit {settings.max_upload_files}); zip them or upload fewer")
    return up


def _parse_resolution(value: str) -> int:
    try:
        r = int(value)
    except ValueError:
        raise HTTPException(422, f"resolution must be an integer power of two in [32, 1024], got {value!r}") from None
    if r < 32 or r > 1024 or r & (r - 1):
        raise HTTPException(422, f"resolution must be a power of two in [32, 1024], got {r}")
    return r


def _parse_bool(field: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("", "0", "false", "no", "off"):
        return False
    raise HTTPException(422, f"{field} must be true or false, got {value[:40]!r}")


def _clean_name(name: str | None, fallback: str) -> str:
    name = "".join(ch for ch in (name or "") if ch.isprintable()).strip()[:200]
    return name or fallback


def upload_limits(settings: Settings):  # -> gan_core.data.UploadLimits
    from gan_core.data import UploadLimits

    wanted = {
        "max_files": settings.max_dataset_images,
        "max_archive_bytes": settings.max_upload_bytes,
        "max_pixels": settings.max_image_pixels,
        "max_total_pixels": settings.max_upload_pixels,
    }
    known = {f.name for f in dataclasses.fields(UploadLimits)}
    return UploadLimits(**{k: v for k, v in wanted.items() if k in known})


def ingest(upload: Upload, tenant: str, settings: Settings, store: ObjectStore, repo: DatasetRepo,
           quotas: Quotas | None, decode_budget: Callable[[int], Any] | None = None) -> DatasetRecord:
    """Blocking (run it off the event loop): validate with gan_core, then reserve (429 when the storage quota
    would be exceeded), store and publish. `decode_budget(pixels)` is entered around decoding with the
    upload's declared pixels (the tenant's budget of pixels being decoded at once; it raises to refuse)."""
    from gan_core.data import DatasetError, prepare_dataset, save_prepared

    with tempfile.TemporaryDirectory(prefix="diggan-upload-") as tmp:
        tmpdir = Path(tmp)
        if upload.archive is not None:
            f = upload.archive.file
            f.seek(0)
            if not zipfile.is_zipfile(f):
                raise HTTPException(422, f"the 'file' field ({_shown(upload.archive)}) is not a zip archive; "
                                         "zip your image folder (e.g. `zip -r images.zip folder/`) and upload that")
            f.seek(0)
            original = tmpdir / "original.zip"
            with open(original, "wb") as out:
                while chunk := f.read(1 << 20):
                    out.write(chunk)
            source: Source = original  # gan_core reads the zip from disk, member by member
            fallback = Path(upload.archive.filename or "dataset").stem or "dataset"
        else:
            items: list[tuple[str, bytes]] = []
            for uf in upload.files:
                uf.file.seek(0)
                items.append((uf.filename or f"image-{len(items)}", uf.file.read()))
            source = items
            original = tmpdir / "original.zip"
            with zipfile.ZipFile(original, "w", zipfile.ZIP_STORED) as zf:  # originals, as sent
                for i, (fname, data) in enumerate(items):
                    zf.writestr(f"{i:05d}-{Path(fname).name[-100:] or 'file'}", data)
            fallback = "dataset"
        try:
            ds = prepare_dataset(source, resolution=upload.resolution, min_images=settings.min_dataset_images,
                                 limits=upload_limits(settings), class_folders=upload.class_folders,
                                 decode_budget=decode_budget)
        except DatasetError as e:
            raise HTTPException(422, str(e)) from None
        except (HTTPException, QuotaExceeded):  # the decode budget's refusal, as it is
            raise
        except Exception as e:  # hostile input must never become a 5xx; the log keeps the traceback
            log.exception("prepare_dataset failed on an upload")
            raise HTTPException(422, f"could not read the upload ({type(e).__name__}); check that every file is a "
                                     "valid PNG/JPEG/WebP image and the zip is not damaged") from None
        prepared = tmpdir / "prepared.zip"
        save_prepared(ds, prepared)

        dataset_id = new_id("ds")
        rec = DatasetRecord(
            id=dataset_id, tenant=tenant, name=_clean_name(upload.name, fallback),
            num_images=int(ds.images.shape[0]), resolution=int(ds.resolution), warnings=list(ds.warnings),
            size_bytes=prepared.stat().st_size, original_bytes=original.stat().st_size,
            source="zip" if upload.archive is not None else "files",
            num_classes=ds.num_classes, class_names=list(ds.class_names or []),
        )
        files = [(keys.dataset_original(tenant, dataset_id), original, "application/zip"),
                 (keys.dataset_prepared(tenant, dataset_id), prepared, "application/zip")]
        return repo.create(rec, files, store, quotas)


def _shown(uf: UploadFile) -> str:
    return repr((uf.filename or "upload")[:80])
