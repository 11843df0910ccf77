"""Turn a folder, zip or list of uploads into a PreparedDataset: decode, convert, fit, resize.

Pipeline: read (archive.py, all limits) -> probe headers (format, size, frames,
pixel limit; no pixels decoded) -> check the upload's total declared pixels and
charge them to the caller's `decode_budget` -> decode fully, convert to RGB, fit
to a square, resize -> one uint8 tensor. Problems with individual files are
collected and reported together, so a user can fix them in one go.

Decoding is the expensive step (~44 ms of CPU per megapixel through decode, convert
and resize, measured on a 40 MP PNG), and its cost is known from the headers before
it starts: `max_total_pixels` refuses an upload that declares too much, and
`decode_budget(pixels)` - a context manager factory the caller passes - lets a
service charge those pixels against a shared budget (say, per tenant) for exactly
as long as the decoding runs.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import statistics
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .archive import (
    DatasetError,
    DecodeBudget,
    RawFile,
    SourceFiles,
    UploadLimits,
    check_total_pixels,
    display_name,
    read_folder,
    read_uploads,
    read_zip,
)
from .prepared import PreparedDataset, dataset_from_files, parse_manifest, resize_images

Source = str | os.PathLike | bytes | bytearray | memoryview | list | tuple

# Only these Pillow plugins are ever tried: a small, well-exercised attack surface
# (no EPS/Ghostscript, no exotic formats).
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
_EXT_FORMATS: dict[str, frozenset[str]] = {
    **dict.fromkeys((".jpg", ".jpeg", ".jpe", ".jfif"), frozenset({"JPEG", "MPO"})),  # MPO: phone JPEGs with a preview
    **dict.fromkeys((".png", ".apng"), frozenset({"PNG"})),
    ".webp": frozenset({"WEBP"}),
    ".gif": frozenset({"GIF"}),
    ".bmp": frozenset({"BMP"}),
    **dict.fromkeys((".tif", ".tiff"), frozenset({"TIFF"})),
}
_FORMAT_EXT = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}
MIN_AUTO_RESOLUTION, MAX_AUTO_RESOLUTION = 32, 1024
FIT_MODES = ("crop", "pad")
PAD_COLOR = (0, 0, 0)  # fit="pad": black bars (edge replication smears streaks the generator would learn)
ALPHA_BACKGROUND = (255, 255, 255, 255)  # transparent pixels become white
_RESAMPLE = Image.Resampling.LANCZOS
_REDUCING_GAP = 3.0  # Pillow: box-reduce first, then LANCZOS; fast and still antialiased


@dataclass
class _Probe:
    size: tuple[int, int]  # width, height after EXIF orientation


@dataclass
class _Decoded:
    pixels: np.ndarray  # [R, R, 3] uint8
    digest: str  # hash of the decoded RGB pixels, for duplicate detection
    conversion: str | None  # what was converted to RGB, for the warning


# ---------------------------------------------------------------------------- per-file work


def _not_an_image_reason(data: bytes) -> str:
    """Best guess at what a file that Pillow cannot identify really is."""
    head = data[:64]
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the image itself (run `git lfs pull` and upload again)"
    for magic, what in (
        (b"PK\x03\x04", "a zip archive"),
        (b"%PDF", "a PDF document"),
        (b"\x1f\x8b", "a gzip archive"),
        (b"Rar!", "a RAR archive"),
    ):
        if head.startswith(magic):
            return f"{what}, not an image"
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        return "a HEIC/AVIF image, which is not supported (convert it to JPEG or PNG)"
    try:
        text = data[:200].decode("utf-8")
        if all(c.isprintable() or c in "\r\n\t" for c in text):
            return f"a text file (starts with {display_name(text.strip()[:40])!r}), not an image"
    except UnicodeDecodeError:
        pass
    return "not a recognisable image (corrupt, or not an image at all)"


def _open(raw: RawFile, limits: UploadLimits) -> Image.Image:
    """Open (headers only) and validate: non-empty, real format matches extension,
    within the pixel limit, a single frame. No pixel data is decoded here."""
    shown = display_name(raw.name)
    if not raw.data:
        raise DatasetError(f"{shown}: empty file (0 bytes). Re-export or re-download it, or remove it.")
    try:
        img = Image.open(io.BytesIO(raw.data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as e:  # Pillow's own (global) guard fired first
        m = re.search(r"\((\d+) pixels\)", str(e))
        raise DatasetError(_pixels_message(shown, limits, f"{_mp(int(m.group(1)))} declared" if m else "declared size")) from e
    except UnidentifiedImageError as e:
        raise DatasetError(f"{shown}: {_not_an_image_reason(raw.data)}. Remove it or replace it with the real image.") from e
    except Exception as e:  # plugins raise SyntaxError, struct.error, ...: all mean "broken file"
        raise DatasetError(f"{shown}: unreadable image header ({type(e).__name__}: {e}). Re-export the image or remove it.") from e
    try:
        _validate_header(img, raw, limits)
    except BaseException:
        img.close()
        raise
    return img


def _mp(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} megapixels" if pixels >= 100_000 else f"{pixels} pixels"


def _pixels_message(shown: str, limits: UploadLimits, detail: str) -> str:
    return (
        f"{shown}: image too large ({detail}); the limit is {_mp(limits.max_pixels)}, "
        "checked before decoding to guard against decompression bombs. Downscale it and upload again."
    )


def _validate_header(img: Image.Image, raw: RawFile, limits: UploadLimits) -> None:
    shown = display_name(raw.name)
    ext = os.path.splitext(raw.name)[1].lower()
    if img.format not in _EXT_FORMATS.get(ext, frozenset()):
        real = _FORMAT_EXT.get(img.format or "", "")
        raise DatasetError(
            f"{shown}: the file is really a {img.format} image but is named {ext}. "
            f"Rename it to {os.path.splitext(raw.name)[0].split('/')[-1]}{real} (or re-save it as {ext}) and upload again."
        )
    w, h = img.size
    if w <= 0 or h <= 0:
        raise DatasetError(f"{shown}: image has zero width or height. Remove it.")
    # Our own bound, not Image.MAX_IMAGE_PIXELS: that is process-global and the service
    # may prepare several uploads with different limits at once.
    if w * h > limits.max_pixels:
        raise DatasetError(_pixels_message(shown, limits, f"{w}x{h} = {_mp(w * h)}"))
    if getattr(img, "is_animated", False) and img.format != "MPO":  # MPO's extra frame is a preview
        what = "multi-page TIFF" if img.format == "TIFF" else f"animated {img.format}"
        raise DatasetError(
            f"{shown}: {what} (more than one frame). Upload still images only: "
            "export the frame you want as PNG or JPEG."
        )


def _oriented_size(img: Image.Image) -> tuple[int, int]:
    """The declared size after EXIF rotation, from the header only. (Pillow's getexif() on a PNG without an
    eXIf chunk before its image data loads the whole image to look for one after it: on a worker thread that
    costs ~35 ms per 40-megapixel header, an hour for a few thousand of them. A PNG's EXIF orientation is
    honoured when its eXIf chunk comes first, as writers put it.)"""
    w, h = img.size
    if img.format == "PNG" and "exif" not in img.info:
        return w, h
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # malformed EXIF: exif_transpose will fail the same way and leave it as is
        orientation = 1
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def probe(raw: RawFile, limits: UploadLimits) -> _Probe:
    with _open(raw, limits) as img:
        return _Probe(_oriented_size(img))


def to_rgb(img: Image.Image, name: str = "image") -> tuple[Image.Image, str | None]:
    """Any supported mode -> RGB. Returns (image, what was converted or None).

    Transparency is composited on white; 16-bit grayscale is scaled (not clipped)
    to 8 bits; CMYK / palette / grayscale use Pillow's conversions.
    """
    mode = img.mode
    if mode == "RGB" and not img.has_transparency_data:
        return img, None
    if mode == "F":
        raise DatasetError(
            f"{display_name(name)}: 32-bit floating-point image, which has no standard brightness range. "
            "Save it as an 8- or 16-bit PNG and upload again."
        )
    if mode == "I" or mode.startswith("I;16"):
        # Pillow's I;16 -> L conversion clips at 255 (mid-gray 32768 would become white); scale instead.
        a = np.clip(np.asarray(img).astype(np.int64), 0, 65535)
        return Image.fromarray(((a * 255 + 32767) // 65535).astype(np.uint8)).convert("RGB"), "16-bit grayscale"
    if img.has_transparency_data:
        what = {"LA": "grayscale+alpha", "La": "grayscale+alpha", "L": "grayscale+alpha", "P": "palette+transparency",
                "PA": "palette+transparency"}.get(mode, "RGBA")
        rgba = img.convert("RGBA")
        flat = Image.alpha_composite(Image.new("RGBA", rgba.size, ALPHA_BACKGROUND), rgba).convert("RGB")
        return flat, f"{what} (composited on white)"
    kinds = {"L": "grayscale", "1": "grayscale", "P": "palette", "CMYK": "CMYK", "YCbCr": "YCbCr"}
    try:
        return img.convert("RGB"), kinds.get(mode, mode)
    except (ValueError, OSError) as e:
        raise DatasetError(f"{display_name(name)}: colour mode {mode} cannot be converted to RGB. Re-save it as an RGB PNG or JPEG.") from e


def fit_square(img: Image.Image, resolution: int, fit: str) -> Image.Image:
    """crop: centre square, then resize. pad: resize the long side to R, centre on black."""
    w, h = img.size
    r = resolution
    if fit == "crop":
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        if (w, h) == (r, r):
            return img
        return img.resize((r, r), _RESAMPLE, box=(left, top, left + s, top + s), reducing_gap=_REDUCING_GAP)
    scale = r / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = img if (nw, nh) == (w, h) else img.resize((nw, nh), _RESAMPLE, reducing_gap=_REDUCING_GAP)
    if (nw, nh) == (r, r):
        return small
    canvas = Image.new("RGB", (r, r), PAD_COLOR)
    canvas.paste(small, ((r - nw) // 2, (r - nh) // 2))
    return canvas


def decode(raw: RawFile, limits: UploadLimits, resolution: int, fit: str) -> _Decoded:
    """Fully decode (catches truncation), orient, convert, fit and resize one image."""
    shown = display_name(raw.name)
    with _open(raw, limits) as img:
        try:
            if img.format in ("JPEG", "MPO"):
                img.draft(img.mode, (resolution, resolution))  # DCT-domain downscale, never below R
            img.load()  # full decode: truncated / corrupt data raises here
        except DatasetError:
            raise
        except Exception as e:
            reason = "truncated (the file ends early)" if "truncated" in str(e) else f"corrupt ({type(e).__name__}: {e})"
            raise DatasetError(f"{shown}: image data is {reason}. Re-export or re-download it, or remove it.") from e
        try:
            ImageOps.exif_transpose(img, in_place=True)  # in place: no extra full-size copy
        except Exception:  # unreadable EXIF: keep the stored orientation rather than fail the upload
            pass
        rgb, conversion = to_rgb(img, raw.name)
        digest = hashlib.blake2b(f"{rgb.size}".encode() + rgb.tobytes(), digest_size=16).hexdigest()
        out = fit_square(rgb, resolution, fit)
        return _Decoded(np.asarray(out, dtype=np.uint8), digest, conversion)


# ---------------------------------------------------------------------------- whole dataset


def choose_resolution(shorter_sides: list[int]) -> int:
    """Largest power of two <= the median shorter side, clipped to [32, 1024]."""
    med = int(statistics.median(shorter_sides))
    r = 1 << max(med, 1).bit_length() - 1
    return min(max(r, MIN_AUTO_RESOLUTION), MAX_AUTO_RESOLUTION)


def _examples(names: list[str], k: int = 3) -> str:
    shown = ", ".join(display_name(n, 60) for n in names[:k])
    return shown + (f" and {len(names) - k} more" if len(names) > k else "")


def _raise_problems(problems: list[str]) -> None:
    if not problems:
        return
    if len(problems) == 1:
        raise DatasetError(problems[0])
    listed = "\n".join(f"  - {p}" for p in problems[:10])
    more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
    raise DatasetError(f"{len(problems)} files cannot be used:\n{listed}{more}\nFix or remove them and try again.", problems)


def _read_source(source: Source, limits: UploadLimits) -> SourceFiles:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return read_zip(source, limits)
    if isinstance(source, (list, tuple)):
        return read_uploads(source, limits)
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if p.is_dir():
            return read_folder(p, limits)
        if p.is_file():
            with open(p, "rb") as f:
                magic = f.read(4)
            if p.suffix.lower() == ".zip" or magic in (b"PK\x03\x04", b"PK\x05\x06"):
                return read_zip(p, limits)
            raise DatasetError(f"{display_name(str(p))}: expected a folder or a .zip of images. Put the images in a folder or zip.")
        raise DatasetError(f"{display_name(str(p))}: no such file or folder.")
    raise DatasetError(f"unsupported source type {type(source).__name__}: give a folder path, a .zip path, zip bytes or a list of (filename, bytes).")


def _class_labels(names: list[str]) -> tuple[list[int], list[str], list[str]]:
    """One top-level folder per class. A single wrapper folder around all classes
    ("mydata/cats/1.png", as zipping a folder produces) is stripped."""
    parts = [n.split("/") for n in names]
    if parts and all(len(p) >= 3 for p in parts) and len({p[0] for p in parts}) == 1:
        parts = [p[1:] for p in parts]
    loose = [n for n, p in zip(names, parts) if len(p) < 2]
    if loose:
        raise DatasetError(
            f"{display_name(loose[0])}: not inside a class folder ({len(loose)} such file(s)). With class folders, "
            "every image must be in <class name>/<image>; move it into a folder or turn class folders off."
        )
    class_names = sorted({p[0] for p in parts})
    index = {c: i for i, c in enumerate(class_names)}
    warns = [f"Only one class folder ({display_name(class_names[0])}): the labels carry no information."] if len(class_names) == 1 else []
    return [index[p[0]] for p in parts], class_names, warns


def _check_args(resolution: int | None, fit: str, min_images: int) -> None:
    if fit not in FIT_MODES:
        raise DatasetError(f"fit must be one of {FIT_MODES}, got {fit!r}.")
    if resolution is not None and (not isinstance(resolution, int) or resolution < 4 or resolution > 4096
                                   or resolution & (resolution - 1)):
        raise DatasetError(f"resolution must be a power of two between 4 and 4096 (e.g. 64, 256), got {resolution!r}.")
    if not isinstance(min_images, int) or min_images < 1:
        raise DatasetError(f"min_images must be a positive integer, got {min_images!r}.")


def _too_few(n: int, min_images: int) -> None:
    if n < min_images:
        raise DatasetError(
            f"only {n} usable image(s) found, but at least {min_images} are needed. Add more images and try again."
        )


def _from_prepared(files: SourceFiles, manifest: dict[str, Any], resolution: int | None, min_images: int,
                   limits: UploadLimits, class_folders: bool, decode_budget: DecodeBudget | None) -> PreparedDataset:
    ds = dataset_from_files(files, manifest, limits, decode_budget)
    if class_folders and ds.labels is None:
        raise DatasetError("this prepared dataset has no class labels; prepare it again from class folders.")
    if resolution is not None and resolution != ds.resolution:
        if len(ds) * 3 * resolution * resolution > limits.max_output_bytes:
            raise DatasetError(f"{len(ds)} images at {resolution}x{resolution} exceed the memory limit. Use a smaller resolution.")
        verb = "downsampled" if resolution < ds.resolution else "upscaled (blurry)"
        ds = PreparedDataset(
            images=resize_images(ds.images, resolution), names=ds.names, resolution=resolution,
            warnings=ds.warnings + [f"Prepared set {verb} from {ds.resolution} to {resolution}."],
            labels=ds.labels, class_names=ds.class_names,
        )
    _too_few(len(ds), min_images)
    return ds


def prepare_dataset(
    source: Source,
    resolution: int | None = None,
    fit: str = "crop",
    min_images: int = 1,
    limits: UploadLimits = UploadLimits(),
    class_folders: bool = False,
    decode_budget: DecodeBudget | None = None,
) -> PreparedDataset:
    """Validate and convert a folder / zip / zip bytes / list of (filename, bytes) into a
    PreparedDataset (uint8 RGB [N, 3, R, R]). Raises DatasetError naming each bad file.

    Once every header is read and before any pixel is decoded, the images' declared pixels
    (width x height, summed) are checked against `limits.max_total_pixels`, then - when given -
    `decode_budget(pixels)` is called and all decoding runs inside the context manager it
    returns. It may raise (a DatasetError, or the caller's own exception) to refuse; nothing is
    decoded then."""
    _check_args(resolution, fit, min_images)
    files = _read_source(source, limits)
    if files.prepared_json is not None and (manifest := parse_manifest(files.prepared_json)) is not None:
        return _from_prepared(files, manifest, resolution, min_images, limits, class_folders, decode_budget)

    warns: list[str] = []
    if files.skipped_junk:
        warns.append(f"Skipped {len(files.skipped_junk)} hidden/system file(s) (__MACOSX, .DS_Store, Thumbs.db, dotfiles): {_examples(files.skipped_junk)}.")
    if files.skipped_other:
        warns.append(f"Skipped {len(files.skipped_other)} non-image file(s): {_examples(files.skipped_other)}.")
    if files.renamed:
        warns.append(f"{len(files.renamed)} uploaded file(s) had the same name and were renamed: {_examples(files.renamed)}.")
    raws = files.images
    if not raws:
        skipped = len(files.skipped_junk) + len(files.skipped_other)
        raise DatasetError(
            f"no images found{f' ({skipped} other files skipped)' if skipped else ''}. "
            "Upload PNG, JPEG, WebP, GIF, BMP or TIFF images (a folder, a .zip, or the files themselves)."
        )
    names = [r.name for r in raws]
    labels, class_names = None, None
    if class_folders:
        labels, class_names, class_warns = _class_labels(names)
        warns += class_warns

    # Pass 1: headers only, all files, so every problem is reported at once.
    problems: list[str] = []
    probes: list[_Probe | None] = []
    for raw in raws:
        try:
            probes.append(probe(raw, limits))
        except DatasetError as e:
            probes.append(None)
            problems.append(str(e))
    ok_sizes = [p.size for p in probes if p is not None]
    declared = sum(w * h for w, h in ok_sizes)
    check_total_pixels(declared, len(ok_sizes), limits)
    r = resolution or (choose_resolution([min(s) for s in ok_sizes]) if ok_sizes else MIN_AUTO_RESOLUTION)
    if len(raws) * 3 * r * r > limits.max_output_bytes:
        raise DatasetError(
            f"{len(raws)} images at {r}x{r} would need {len(raws) * 3 * r * r / 2**30:.1f} GiB, over the "
            f"{limits.max_output_bytes / 2**30:.1f} GiB limit. Choose a smaller resolution or upload fewer images."
        )

    # Pass 2: decode. Pillow releases the GIL while decoding/resampling, so threads help.
    def work(i: int) -> _Decoded | str:
        try:
            return decode(raws[i], limits, r, fit)
        except DatasetError as e:
            return str(e)

    todo = [i for i, p in enumerate(probes) if p is not None]
    images = torch.empty((len(raws), 3, r, r), dtype=torch.uint8)
    images_np = images.numpy()  # shares memory; numpy's HWC->CHW copy is far faster than torch's for uint8
    decoded: dict[int, tuple[str, str | None]] = {}  # index -> (digest, conversion)
    with (decode_budget(declared) if decode_budget is not None else nullcontext()), \
            ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        for i, res in zip(todo, pool.map(work, todo)):
            if isinstance(res, str):
                problems.append(res)
            else:
                images_np[i] = res.pixels.transpose(2, 0, 1)
                decoded[i] = (res.digest, res.conversion)
    _raise_problems(problems)
    _too_few(len(raws), min_images)

    sizes = [p.size for p in probes if p is not None]  # all of them: any failure raised above
    warns += _image_warnings(names, sizes, [decoded[i] for i in range(len(raws))], r, fit)
    return PreparedDataset(
        images=images,
        names=[display_name(n, 10_000) for n in names],
        resolution=r,
        warnings=warns,
        labels=labels,
        class_names=class_names,
    )


def _image_warnings(
    names: list[str], sizes: list[tuple[int, int]], decoded: list[tuple[str, str | None]], r: int, fit: str
) -> list[str]:
    warns: list[str] = []
    distinct = sorted(set(sizes), key=lambda s: s[0] * s[1])
    if len(distinct) > 1:
        lo, hi = distinct[0], distinct[-1]
        warns.append(f"Images have {len(distinct)} different sizes (from {lo[0]}x{lo[1]} to {hi[0]}x{hi[1]}); all were resized to {r}x{r}.")
    non_square = [n for n, (w, h) in zip(names, sizes) if w != h]
    if non_square:
        how = "centre-cropped to a square (edges lost)" if fit == "crop" else "padded to a square with black bars"
        warns.append(f"{len(non_square)} non-square image(s) were {how}: {_examples(non_square)}.")
    small = [n for n, (w, h) in zip(names, sizes) if (min(w, h) if fit == "crop" else max(w, h)) < r]
    if small:
        warns.append(f"{len(small)} image(s) smaller than {r}px were upscaled and will look blurry: {_examples(small)}.")
    first: dict[str, str] = {}
    dups: list[str] = []
    for n, (digest, _) in zip(names, decoded):
        if digest in first:
            dups.append(f"{display_name(n, 60)} = {display_name(first[digest], 60)}")
        else:
            first[digest] = n
    if dups:
        more = f" and {len(dups) - 3} more" if len(dups) > 3 else ""
        warns.append(f"{len(dups)} exact duplicate image(s) kept (they count twice in training): {'; '.join(dups[:3])}{more}.")
    conv: dict[str, list[str]] = {}
    for n, (_, conversion) in zip(names, decoded):
        if conversion:
            conv.setdefault(conversion, []).append(n)
    if conv:
        total = sum(len(v) for v in conv.values())
        parts = "; ".join(f"{len(v)} {k} ({_examples(v, 2)})" for k, v in sorted(conv.items()))
        warns.append(f"Converted {total} image(s) to RGB: {parts}.")
    return warns
