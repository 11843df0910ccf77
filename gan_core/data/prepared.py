"""PreparedDataset, its on-disk form (a stored zip of PNGs + dataset.json), and resizing.

The zip is written deterministically (fixed timestamps, stored entries) so the same
dataset always gives the same bytes, and atomically (temp file + os.replace) so a
reader never sees half a file. Loading goes through the same safe zip reader as uploads.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .archive import (
    PREPARED_JSON,
    TRUSTED_LIMITS,
    DatasetError,
    DecodeBudget,
    SourceFiles,
    UploadLimits,
    check_total_pixels,
    display_name,
    read_zip,
)

FORMAT_NAME = "diggan-prepared"
FORMAT_VERSION = 1
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed: identical datasets give identical bytes


@dataclass
class PreparedDataset:
    images: torch.Tensor  # uint8 [N, 3, R, R], RGB
    names: list[str]  # source file names, for display only
    resolution: int
    warnings: list[str] = field(default_factory=list)
    labels: list[int] | None = None  # class index per image when prepared from class folders
    class_names: list[str] | None = None

    def __post_init__(self) -> None:
        x, n = self.images, len(self.names)
        if x.dtype != torch.uint8 or x.ndim != 4 or tuple(x.shape[1:]) != (3, self.resolution, self.resolution):
            raise ValueError(f"images must be uint8 [N, 3, {self.resolution}, {self.resolution}], got {x.dtype} {tuple(x.shape)}")
        if x.shape[0] != n:
            raise ValueError(f"{x.shape[0]} images but {n} names")
        if (self.labels is None) != (self.class_names is None):
            raise ValueError("labels and class_names go together")
        if self.labels is not None:
            k = len(self.class_names or [])
            if len(self.labels) != n or any(not 0 <= lab < k for lab in self.labels):
                raise ValueError(f"labels must be {n} class indices in [0, {k})")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else 0


def image_name(i: int) -> str:
    return f"img{i:05d}.png"


def _png_bytes(chw: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(chw.numpy().transpose(1, 2, 0)), "RGB").save(buf, "PNG", compress_level=3)  # level 6 is ~2.5x slower for ~5% smaller files
    return buf.getvalue()


def save_prepared(ds: PreparedDataset, path: str | os.PathLike) -> Path:
    """Write `ds` as a zip (stored, not deflated: PNGs are already compressed) of
    img00000.png... + dataset.json. Atomic: a temp file in the same folder is renamed over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "count": len(ds),
        "resolution": ds.resolution,
        "names": ds.names,
        "labels": ds.labels,
        "class_names": ds.class_names,
        "warnings": ds.warnings,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
                for i in range(len(ds)):
                    _write(zf, image_name(i), _png_bytes(ds.images[i]))
                # ensure_ascii: names from odd file systems may hold lone surrogates
                _write(zf, PREPARED_JSON, json.dumps(manifest, indent=1, ensure_ascii=True).encode())
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def _write(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


def parse_manifest(data: bytes) -> dict[str, Any] | None:
    """The dataset.json of a prepared set, or None if `data` is some other JSON file."""
    try:
        m = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(m, dict) or m.get("format") != FORMAT_NAME:
        return None
    if m.get("version") != FORMAT_VERSION:
        raise DatasetError(f"{PREPARED_JSON}: prepared-dataset version {m.get('version')!r} is not supported (expected {FORMAT_VERSION}). Prepare it again.")
    return m


def _check_manifest(m: dict[str, Any]) -> None:
    def bad(what: str) -> DatasetError:
        return DatasetError(f"{PREPARED_JSON}: {what}. The prepared dataset is damaged; prepare it again from the images.")

    n, r = m.get("count"), m.get("resolution")
    if not isinstance(n, int) or n < 0:
        raise bad("'count' is not a non-negative integer")
    if not isinstance(r, int) or r < 1 or r & (r - 1):
        raise bad("'resolution' is not a power of two")
    names = m.get("names")
    if not isinstance(names, list) or len(names) != n or not all(isinstance(s, str) for s in names):
        raise bad(f"'names' is not a list of {n} strings")
    if not isinstance(m.get("warnings", []), list) or not all(isinstance(s, str) for s in m.get("warnings", [])):
        raise bad("'warnings' is not a list of strings")
    labels, classes = m.get("labels"), m.get("class_names")
    if (labels is None) != (classes is None):
        raise bad("'labels' and 'class_names' must both be present or both null")
    if classes is not None:
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise bad("'class_names' is not a list of strings")
        if (not isinstance(labels, list) or len(labels) != n
                or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < len(classes) for v in labels)):
            raise bad(f"'labels' is not a list of {n} class indices")


def _decode_png(name: str, data: bytes, r: int, limits: UploadLimits) -> np.ndarray:
    shown = display_name(name)
    try:
        with Image.open(io.BytesIO(data), formats=("PNG",)) as img:
            if img.size != (r, r) or img.mode != "RGB" or getattr(img, "is_animated", False):
                raise DatasetError(f"{shown}: expected a {r}x{r} RGB PNG, got {img.size[0]}x{img.size[1]} {img.mode}. Prepare the dataset again.")
            if r * r > limits.max_pixels:
                raise DatasetError(f"{shown}: {r}x{r} is over the {limits.max_pixels / 1e6:.0f} megapixel limit.")
            img.load()
            return np.asarray(img, dtype=np.uint8)
    except DatasetError:
        raise
    except Exception as e:
        raise DatasetError(f"{shown}: unreadable PNG in prepared dataset ({type(e).__name__}: {e}). Prepare the dataset again.") from e


def dataset_from_files(files: SourceFiles, manifest: dict[str, Any], limits: UploadLimits,
                       decode_budget: DecodeBudget | None = None) -> PreparedDataset:
    """Rebuild a PreparedDataset from a prepared zip's members, checking every part. Its N images of
    R x R declare N * R * R pixels: checked against limits.max_total_pixels and charged to
    `decode_budget` (see prepare_dataset) around the decoding."""
    _check_manifest(manifest)
    n, r = manifest["count"], manifest["resolution"]
    by_name = {f.name: f.data for f in files.images}
    expected = {image_name(i) for i in range(n)}
    if set(by_name) != expected:
        extra = sorted(set(by_name) - expected)[:3]
        missing = sorted(expected - set(by_name))[:3]
        raise DatasetError(
            f"{PREPARED_JSON}: the zip does not match its manifest (missing {missing or 'none'}, unexpected {extra or 'none'}). "
            "Prepared zips must not be edited; prepare the dataset again."
        )
    if n * 3 * r * r > limits.max_output_bytes:
        raise DatasetError(f"{PREPARED_JSON}: {n} images at {r}x{r} exceed the memory limit. Use a smaller dataset.")
    check_total_pixels(n * r * r, n, limits)
    images = torch.empty((n, 3, r, r), dtype=torch.uint8)
    view = images.numpy()  # numpy's HWC->CHW copy is much faster than torch's for uint8
    with decode_budget(n * r * r) if decode_budget is not None else nullcontext():
        for i in range(n):
            view[i] = _decode_png(image_name(i), by_name[image_name(i)], r, limits).transpose(2, 0, 1)
    return PreparedDataset(
        images=images,
        names=list(manifest["names"]),
        resolution=r,
        warnings=list(manifest.get("warnings", [])),
        labels=manifest["labels"],
        class_names=manifest["class_names"],
    )


def load_prepared(path: str | os.PathLike | bytes, limits: UploadLimits | None = None) -> PreparedDataset:
    """Load what save_prepared wrote. `limits` defaults to generous ones meant for files this
    service wrote itself; pass UploadLimits() when the zip comes from a user."""
    limits = limits or TRUSTED_LIMITS
    files = read_zip(path, limits)
    manifest = parse_manifest(files.prepared_json) if files.prepared_json is not None else None
    if manifest is None:
        label = "uploaded zip" if isinstance(path, (bytes, bytearray)) else display_name(str(path))
        raise DatasetError(f"{label}: not a prepared dataset (no valid {PREPARED_JSON}). Use prepare_dataset() on raw images.")
    return dataset_from_files(files, manifest, limits)


def resize_images(images_uint8: torch.Tensor, resolution: int, chunk: int = 64) -> torch.Tensor:
    """Antialiased bicubic resize of uint8 [N, C, H, W] to [N, C, R, R] (e.g. a 256 set for a 64 run).
    Returns the input itself when it is already R x R."""
    x = images_uint8
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise ValueError(f"expected uint8 [N, C, H, W], got {x.dtype} {tuple(x.shape)}")
    if not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
    if tuple(x.shape[2:]) == (resolution, resolution):
        return x
    out = torch.empty((x.shape[0], x.shape[1], resolution, resolution), dtype=torch.uint8, device=x.device)
    for i in range(0, x.shape[0], chunk):  # bounded float memory for big sets
        y = F.interpolate(x[i : i + chunk].float(), size=(resolution, resolution), mode="bicubic",
                          align_corners=False, antialias=True)
        out[i : i + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out

