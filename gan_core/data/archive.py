"""Safe reading of user uploads: zip archives, folders and lists of (name, bytes).

Everything is read into memory; nothing is ever extracted to disk, and member
names are only used as labels, never as paths. Limits are enforced while the
bytes are being decompressed (header sizes are used only to reject early,
never to accept), so a zip bomb costs at most `max_file_uncompressed` bytes.
"""

from __future__ import annotations

import io
import os
import re
import stat
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_MiB = 1 << 20
_GiB = 1 << 30
_CHUNK = 1 * _MiB

# Extensions Pillow decodes for us (see loading.ALLOWED_FORMATS).
IMAGE_EXTS = frozenset({".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
# Image formats people upload that we do not decode: an error that says so beats silently skipping them.
UNSUPPORTED_IMAGE_EXTS = frozenset(
    {".heic", ".heif", ".avif", ".jxl", ".svg", ".psd", ".ico", ".dng", ".raw", ".cr2", ".nef", ".arw", ".jp2"}
)
ARCHIVE_EXTS = frozenset({".zip", ".tar", ".gz", ".tgz", ".bz2", ".tbz2", ".xz", ".txz", ".zst", ".7z", ".rar", ".lz", ".lzma"})
# OS droppings: skipped (with a warning count), whatever their extension.
JUNK_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"})
JUNK_DIRS = frozenset({"__macosx"})
PREPARED_JSON = "dataset.json"
# decode_budget(pixels) -> a context manager held while that many declared pixels are decoded; raise to refuse.
DecodeBudget = Callable[[int], AbstractContextManager[Any]]


class DatasetError(ValueError):
    """An upload that cannot become a dataset. The message names the file, the reason, and the fix.

    `problems` lists one line per offending file when several were found.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


@dataclass(frozen=True)
class UploadLimits:
    """Bounds on what one upload may cost. Defaults suit a public service on a modest worker."""

    max_files: int = 5000  # image files
    max_entries: int = 20_000  # every zip entry / folder entry, incl. directories and junk
    max_archive_bytes: int = 2 * _GiB  # the zip file itself (compressed)
    max_total_uncompressed: int = 2 * _GiB
    max_file_uncompressed: int = 64 * _MiB
    max_compression_ratio: float = 200.0
    ratio_check_min_bytes: int = 1 * _MiB  # tiny members compress oddly; judge ratios only above this
    max_pixels: int = 64_000_000  # per image, checked from the header before any pixel is decoded
    # All images of one upload together, from their headers, before any is decoded: 8 gigapixels is
    # 5,000 images (max_files) of 1024x1024 (the largest resolution we train) with 1.5x to spare.
    # Measured here: prepare_dataset spends ~44 ms of CPU per declared megapixel (a 40 MP PNG: decode,
    # convert, resize), so this caps one upload at ~6 CPU-minutes where 2,000 such PNGs took ~1 hour.
    max_total_pixels: int = 8_000_000_000
    max_name_length: int = 255  # whole member path, in characters
    max_output_bytes: int = 4 * _GiB  # N * 3 * R * R of the prepared uint8 tensor

    def __post_init__(self) -> None:
        for f in self.__dataclass_fields__:
            if getattr(self, f) <= 0:
                raise ValueError(f"UploadLimits.{f} must be positive, got {getattr(self, f)!r}")


# Limits for files this code wrote itself (load_prepared): only the per-file and pixel guards matter.
TRUSTED_LIMITS = UploadLimits(
    max_files=10_000_000,
    max_entries=10_000_001,
    max_archive_bytes=1 << 50,
    max_total_uncompressed=1 << 50,
    max_compression_ratio=1e9,
    max_output_bytes=1 << 50,
    max_total_pixels=1 << 50,
)


@dataclass
class RawFile:
    name: str  # normalised posix path inside the source; display only
    data: bytes


@dataclass
class SourceFiles:
    """Candidate image files of a source, plus what was skipped on the way."""

    images: list[RawFile] = field(default_factory=list)
    skipped_junk: list[str] = field(default_factory=list)  # hidden / OS files
    skipped_other: list[str] = field(default_factory=list)  # non-image files
    prepared_json: bytes | None = None  # root dataset.json, if the source looks like a prepared set
    renamed: list[str] = field(default_factory=list)  # duplicate upload names that got a suffix


def fmt_bytes(n: float) -> str:
    for unit, size in (("GiB", _GiB), ("MiB", _MiB), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}".replace(".0 ", " ")
    return f"{int(n)} bytes"


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:,.0f} megapixels"


def check_total_pixels(total: int, count: int, limits: UploadLimits) -> None:
    """Refuse an upload whose images declare more than limits.max_total_pixels, before decoding."""
    if total > limits.max_total_pixels:
        per_1024 = limits.max_total_pixels // (1024 * 1024)
        raise DatasetError(
            f"the {count} images declare {_megapixels(total)} in total, over the {_megapixels(limits.max_total_pixels)} limit for one "
            f"upload (about {per_1024:,} images of 1024x1024); refused before decoding. Training uses at most "
            "1024x1024 pixels per image: downscale the images (e.g. to 1024 px on the longer side) or upload fewer, "
            "and try again."
        )


def display_name(name: str, limit: int = 120) -> str:
    """A name safe to put in a message: control characters escaped, length bounded."""
    s = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in name)
    return s if len(s) <= limit else s[: limit // 2] + "…" + s[-limit // 2 :]


def natural_key(name: str) -> tuple:
    """Sort "img2" before "img10"; deterministic for any input."""
    parts = re.split(r"(\d+)", name.lower())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), name


# Refused in member names, like traversal: ASCII and C1 controls (\x00-\x1f, \x7f-\x9f), format
# characters (bidi overrides such as U+202E, zero-width characters, BOM), line/paragraph separators
# and lone surrogates. Spaces of any kind (U+00A0, U+3000), private-use and not-yet-assigned
# characters (new emoji) are kept: real file names contain them.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_CATEGORY_NAMES = {"Cc": "a control character", "Cf": "an invisible formatting character",
                   "Zl": "a line separator", "Zp": "a paragraph separator", "Cs": "a lone surrogate"}


def normalise_name(raw: str, limits: UploadLimits) -> str:
    """Validate a member name and return it as a clean relative posix path.

    Rejects anything that could mean a different place on disk to some tool
    (traversal, absolute, drive letters, backslashes), even though we never
    write these names anywhere, and names holding control or invisible
    formatting characters: such an archive is hostile or broken.
    """
    shown = display_name(raw)
    if len(raw) > limits.max_name_length:
        raise DatasetError(
            f"{shown}: file name is {len(raw)} characters long (limit {limits.max_name_length}). "
            "Rename the file (or shorten its folder path) and upload again."
        )
    if "\x00" in raw:
        raise DatasetError(f"{shown}: file name contains a NUL byte. The archive is damaged; re-create it.")
    bad = next((ch for ch in raw if unicodedata.category(ch) in _REFUSED_CATEGORIES), None)
    if bad is not None:
        raise DatasetError(
            f"{shown}: file name contains the control character {repr(bad)[1:-1]} ({_CATEGORY_NAMES[unicodedata.category(bad)]}). "
            "Names with control characters are refused (they can rewrite terminals and logs, or disguise a name); "
            "rename the file and re-create the zip."
        )
    if "\\" in raw:
        raise DatasetError(
            f"{shown}: file name contains a backslash. Archives must use '/' between folders; "
            "re-create the zip with a standard tool (Explorer's 'Send to > Compressed folder', macOS 'Compress', or `zip -r`)."
        )
    if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw):
        raise DatasetError(f"{shown}: absolute path in archive. Re-create the zip from inside the image folder.")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DatasetError(f"{shown}: path goes outside the archive ('..'). Such archives are refused; re-create the zip.")
    return "/".join(parts)


def classify(name: str) -> str:
    """'junk' | 'archive' | 'image' | 'unsupported' | 'other' for a normalised member name."""
    parts = name.split("/")
    base = parts[-1]
    if any(p.lower() in JUNK_DIRS or p.startswith(".") for p in parts) or base.lower() in JUNK_NAMES:
        return "junk"
    ext = os.path.splitext(base)[1].lower()
    if ext in ARCHIVE_EXTS:
        return "archive"
    if ext in IMAGE_EXTS:
        return "image"
    if ext in UNSUPPORTED_IMAGE_EXTS:
        return "unsupported"
    return "other"


def _nested_archive_error(name: str) -> DatasetError:
    return DatasetError(
        f"{display_name(name)}: archive inside the upload. Nested archives are not opened; "
        "extract it and upload its images directly (one zip, or the files themselves)."
    )


def _unsupported_error(name: str) -> DatasetError:
    ext = os.path.splitext(name)[1].lower()
    return DatasetError(
        f"{display_name(name)}: {ext} images are not supported. Convert it to JPEG or PNG (or remove it) and upload again."
    )


class _Budget:
    """Running total of decompressed bytes across one source."""

    def __init__(self, limits: UploadLimits, archive_bytes: int | None = None) -> None:
        self.limits, self.total, self.archive_bytes = limits, 0, archive_bytes

    def add(self, name: str, n: int) -> None:
        lim = self.limits
        self.total += n
        if self.total > lim.max_total_uncompressed:
            raise DatasetError(
                f"{display_name(name)}: the upload is larger than {fmt_bytes(lim.max_total_uncompressed)} uncompressed "
                "(stopped reading here). Upload fewer or smaller images."
            )
        # Whole-archive ratio: catches many entries sharing one compressed stream (overlap bombs).
        if (
            self.archive_bytes is not None
            and self.total > lim.ratio_check_min_bytes
            and self.total > lim.max_compression_ratio * max(self.archive_bytes, 1)
        ):
            raise DatasetError(
                f"{display_name(name)}: the archive expands more than {lim.max_compression_ratio:.0f}x; "
                "this looks like a zip bomb and was refused. Zip ordinary image files instead."
            )


def _check_declared(info: zipfile.ZipInfo, name: str, limits: UploadLimits) -> None:
    """Cheap early rejection from header sizes (never trusted for acceptance)."""
    shown = display_name(name)
    if info.file_size > limits.max_file_uncompressed:
        raise DatasetError(
            f"{shown}: {fmt_bytes(info.file_size)} uncompressed, over the {fmt_bytes(limits.max_file_uncompressed)} "
            "per-file limit. Resize or re-encode the image (e.g. JPEG) and upload again."
        )
    if info.file_size > limits.ratio_check_min_bytes and info.file_size > limits.max_compression_ratio * max(info.compress_size, 1):
        raise DatasetError(_ratio_message(shown, limits))


def _ratio_message(shown: str, limits: UploadLimits) -> str:
    return (
        f"{shown}: compressed more than {limits.max_compression_ratio:.0f}:1, which real images never are; "
        "this looks like a zip bomb and was refused. Zip the original image files instead."
    )


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, limits: UploadLimits, budget: _Budget) -> bytes:
    """Decompress one member in chunks, counting real output bytes against every limit."""
    shown = display_name(name)
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        # zipfile decompresses bzip2/LZMA without an output bound per call, so a tiny
        # chunk could expand to gigabytes before we can count it: refuse them.
        raise DatasetError(
            f"{shown}: compressed with an unsupported method (zip type {info.compress_type}). "
            "Re-create the zip with standard (deflate) compression."
        )
    _check_declared(info, name, limits)
    chunks: list[bytes] = []
    n = 0
    try:
        with zf.open(info) as f:
            while chunk := f.read(_CHUNK):
                n += len(chunk)
                if n > limits.max_file_uncompressed:
                    raise DatasetError(
                        f"{shown}: more than {fmt_bytes(limits.max_file_uncompressed)} uncompressed (its header said "
                        f"{info.file_size} bytes). Refused; upload the original image files."
                    )
                if n > limits.ratio_check_min_bytes and n > limits.max_compression_ratio * max(info.compress_size, 1):
                    raise DatasetError(_ratio_message(shown, limits))
                budget.add(name, len(chunk))
                chunks.append(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError) as e:
        # CRC mismatch, truncated stream, bad local header...: the archive's fault, not ours.
        raise DatasetError(f"{shown}: damaged zip entry ({str(e) or type(e).__name__}). Re-create the zip and upload again.") from e
    return b"".join(chunks)


def _check_directory_size(fp: io.BufferedIOBase, label: str, limits: UploadLimits) -> None:
    """Check the end-of-central-directory record before zipfile builds one ZipInfo per
    entry: millions of tiny entries would otherwise exhaust memory first."""
    try:
        endrec = zipfile._EndRecData(fp)  # type: ignore[attr-defined]  # private, but stable for decades
        count, cd_size = int(endrec[zipfile._ECD_ENTRIES_TOTAL]), int(endrec[zipfile._ECD_SIZE])  # type: ignore[attr-defined]
    except Exception:
        return  # no readable record: ZipFile() reports the damage
    # The count can lie; the directory's byte size bounds the real count (>= 46 bytes per entry).
    if count > limits.max_entries or cd_size > limits.max_entries * 1024:
        raise DatasetError(f"{label}: {count} entries, over the limit of {limits.max_entries}. Upload fewer files.")


def read_zip(source: str | Path | bytes | bytearray | memoryview, limits: UploadLimits) -> SourceFiles:
    """Validate a zip and return its candidate images, decompressed in memory."""
    label = display_name(os.path.basename(str(source))) if isinstance(source, (str, Path)) else "uploaded zip"
    if isinstance(source, (str, Path)):
        size = os.path.getsize(source)
        fp: io.BufferedIOBase = open(source, "rb")  # noqa: SIM115 - closed below
    else:
        data = bytes(source)
        size = len(data)
        fp = io.BytesIO(data)
    try:
        if size > limits.max_archive_bytes:
            raise DatasetError(
                f"{label}: {fmt_bytes(size)}, over the {fmt_bytes(limits.max_archive_bytes)} archive limit. Upload fewer images."
            )
        _check_directory_size(fp, label, limits)
        try:
            zf = zipfile.ZipFile(fp)
        except UnicodeDecodeError as e:
            raise DatasetError(
                f"{label}: a file name in the zip is marked UTF-8 but is not valid UTF-8. "
                "Rename the files to plain names (letters, digits, '-', '_') and re-create the zip."
            ) from e
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise DatasetError(f"{label}: not a valid zip file ({e}). Upload a .zip of image files.") from e
        with zf:
            return _read_zipfile(zf, label, size, limits)
    finally:
        fp.close()


def _triage(name: str, out: SourceFiles) -> str:
    """classify(name), after recording junk and refusing nested archives and unsupported types.

    Shared by the zip and folder readers so both apply exactly the same rules."""
    kind = classify(name)
    if kind == "junk":
        out.skipped_junk.append(name)
    elif kind == "archive":
        raise _nested_archive_error(name)
    elif kind == "unsupported":
        raise _unsupported_error(name)
    return kind


def _read_zipfile(zf: zipfile.ZipFile, label: str, size: int, limits: UploadLimits) -> SourceFiles:
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise DatasetError(f"{label}: {len(infos)} entries, over the limit of {limits.max_entries}. Upload fewer files.")
    out = SourceFiles()
    seen: set[str] = set()
    wanted: list[tuple[str, zipfile.ZipInfo]] = []
    prepared: zipfile.ZipInfo | None = None
    for info in infos:
        name = normalise_name(info.filename, limits)
        shown = display_name(info.filename)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DatasetError(f"{shown}: symbolic link inside the zip. Links are refused; zip the image files themselves.")
        if info.flag_bits & 0x1:
            raise DatasetError(f"{shown}: password-protected entry. Upload a zip without a password.")
        if info.is_dir() or not name:
            continue
        if name in seen:
            raise DatasetError(f"{shown}: appears twice in the zip. Re-create the zip so every file appears once.")
        seen.add(name)
        kind = _triage(name, out)
        if kind == "junk":
            continue
        if kind == "image":
            wanted.append((name, info))
        elif name == PREPARED_JSON:
            prepared = info
        else:
            out.skipped_other.append(name)
    if len(wanted) > limits.max_files:
        raise DatasetError(f"{label}: {len(wanted)} images, over the limit of {limits.max_files}. Upload fewer images.")
    budget = _Budget(limits, archive_bytes=size)
    if prepared is not None:
        out.prepared_json = _read_member(zf, prepared, PREPARED_JSON, limits, budget)
    for name, info in sorted(wanted, key=lambda t: natural_key(t[0])):
        out.images.append(RawFile(name, _read_member(zf, info, name, limits, budget)))
    return out


def read_folder(root: str | Path, limits: UploadLimits) -> SourceFiles:
    """Candidate images under a local folder (recursive). Local folders are the caller's own
    files, so symlinked files are followed; symlinked folders are not (no loops)."""
    root = Path(root)
    out = SourceFiles()
    wanted: list[tuple[str, Path]] = []
    entries = 0
    for dirpath, dirnames, filenames in os.walk(root):
        entries += len(dirnames) + len(filenames)
        if entries > limits.max_entries:
            raise DatasetError(f"{display_name(str(root))}: more than {limits.max_entries} files and folders. Use a smaller folder.")
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        for d in list(dirnames):  # prune hidden / junk folders, counting them once
            if d.startswith(".") or d.lower() in JUNK_DIRS:
                dirnames.remove(d)
                out.skipped_junk.append(rel_dir + d + "/")
        dirnames.sort()
        for fn in filenames:
            name = rel_dir + fn
            kind = _triage(name, out)
            if kind == "image":
                wanted.append((name, Path(dirpath) / fn))
            elif kind != "junk":
                out.skipped_other.append(name)
    if len(wanted) > limits.max_files:
        raise DatasetError(f"{display_name(str(root))}: {len(wanted)} images, over the limit of {limits.max_files}. Use fewer images.")
    budget = _Budget(limits)
    for name, path in sorted(wanted, key=lambda t: natural_key(t[0])):
        with open(path, "rb") as f:
            data = f.read(limits.max_file_uncompressed + 1)  # +1: detect "too big" without reading it all
        if len(data) > limits.max_file_uncompressed:
            raise DatasetError(
                f"{display_name(name)}: larger than the {fmt_bytes(limits.max_file_uncompressed)} per-file limit. "
                "Resize or re-encode it (e.g. JPEG)."
            )
        budget.add(name, len(data))
        out.images.append(RawFile(name, data))
    return out


def read_uploads(items: Iterable[tuple[str, bytes]], limits: UploadLimits) -> SourceFiles:
    """Candidate images from a list of uploaded (filename, bytes), in upload order.
    A list holding a single .zip is that zip."""
    items = list(items)
    if len(items) > limits.max_entries:
        raise DatasetError(f"{len(items)} uploaded files, over the limit of {limits.max_entries}. Upload fewer files.")
    for i, item in enumerate(items):
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)
                and isinstance(item[1], (bytes, bytearray, memoryview))):
            raise DatasetError(f"upload #{i}: expected a (filename, bytes) pair, got {type(item).__name__}.")
    if len(items) == 1 and os.path.splitext(items[0][0])[1].lower() == ".zip":
        return read_zip(items[0][1], limits)
    out = SourceFiles()
    wanted: list[RawFile] = []
    used: set[str] = set()
    budget = _Budget(limits)
    for raw_name, data in items:
        name = normalise_name(raw_name, limits) or "unnamed"
        kind = classify(name)
        if kind == "junk":
            out.skipped_junk.append(name)
            continue
        if kind == "archive":
            raise _nested_archive_error(name)
        if kind == "unsupported":
            raise _unsupported_error(name)
        if kind == "other":
            out.skipped_other.append(name)
            continue
        if len(data) > limits.max_file_uncompressed:
            raise DatasetError(
                f"{display_name(name)}: larger than the {fmt_bytes(limits.max_file_uncompressed)} per-file limit. "
                "Resize or re-encode it (e.g. JPEG)."
            )
        budget.add(name, len(data))
        # Phones name every upload "image.jpg": names are labels only, so disambiguate instead of failing.
        unique, k = name, 2
        while unique in used:
            stem, ext = os.path.splitext(name)
            unique, k = f"{stem} ({k}){ext}", k + 1
        if unique != name:
            out.renamed.append(unique)
        used.add(unique)
        wanted.append(RawFile(unique, bytes(data)))
    if len(wanted) > limits.max_files:
        raise DatasetError(f"{len(wanted)} uploaded images, over the limit of {limits.max_files}. Upload fewer images.")
    out.images = wanted  # upload order: the caller chose it (zips and folders are sorted instead)
    return out
