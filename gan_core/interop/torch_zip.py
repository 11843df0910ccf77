"""Check a `torch.save` zip (one of our .pt checkpoints) before torch.load reads it. torch-free.

torch.load reads the zip's central directory and allocates each record at its declared
uncompressed size, and it inflates deflated records although torch.save never writes one:
a 255 KiB .pt whose storage record is deflated zeros inflates to 252 MiB. So before
torch.load sees the bytes: every entry must be stored (not compressed), its declared sizes
must agree and lie inside the file, the entry count is capped before zipfile builds one
object per entry, and data.pkl must pass the same opcode scan as an NVlabs pickle (torch's
weights-only unpickler is pure Python, but the tuple-hash recursion is in C).
"""

from __future__ import annotations

import io
import zipfile

from .bounds import MAX_TENSORS, BoundsError
from .pickle_scan import PickleScanLimits, scan_pickle

MAX_ENTRIES = MAX_TENSORS + 64  # one record per storage, plus data.pkl, version, byteorder, ...
MAX_NAME = 1024
DATA_PKL_SCAN = PickleScanLimits(allow_persistent_ids=True)  # storages are persistent ids in torch's format


def check_torch_zip(data: bytes | bytearray | memoryview, label: str = "the checkpoint",
                    max_entries: int = MAX_ENTRIES) -> None:
    """Raise BoundsError unless `data` is a zip torch.load can read without inflating anything."""
    size = len(data)
    fp = io.BytesIO(data)
    try:
        endrec = zipfile._EndRecData(fp)  # type: ignore[attr-defined]  # private, stable; gan_core.data uses it too
    except OSError:
        endrec = None
    if not endrec:
        raise BoundsError(f"{label} is not a readable zip (no end-of-directory record)")
    count, cd_size = int(endrec[zipfile._ECD_ENTRIES_TOTAL]), int(endrec[zipfile._ECD_SIZE])  # type: ignore[attr-defined]
    if count > max_entries or cd_size > max_entries * (46 + MAX_NAME):  # >= 46 bytes per central entry
        raise BoundsError(f"{label} has {count:,} zip entries, over the limit of {max_entries:,}")
    try:
        zf = zipfile.ZipFile(fp)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, UnicodeDecodeError) as exc:
        raise BoundsError(f"{label} is not a readable zip ({str(exc)[:200]})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > max_entries:
            raise BoundsError(f"{label} has {len(infos):,} zip entries, over the limit of {max_entries:,}")
        seen: set[str] = set()
        total = 0
        for info in infos:
            name = info.filename[:80]
            if len(info.filename) > MAX_NAME or info.filename in seen:
                raise BoundsError(f"{label}: zip entry {name!r} is duplicated or its name is too long")
            seen.add(info.filename)
            if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
                raise BoundsError(f"{label}: zip entry {name!r} is compressed ({info.compress_size:,} bytes declared "
                                  f"to inflate to {info.file_size:,}); torch.save never compresses, and a compressed "
                                  "entry can expand far beyond the file")
            if info.flag_bits & 0x1:
                raise BoundsError(f"{label}: zip entry {name!r} is encrypted")
            if info.header_offset + info.compress_size > size:
                raise BoundsError(f"{label}: zip entry {name!r} declares {info.file_size:,} bytes past the end of the file")
            total += info.file_size
        if total > size:
            raise BoundsError(f"{label}: its zip entries declare {total:,} bytes, more than the file's {size:,}")
        pkls = [i for i in infos if i.filename.endswith("/data.pkl") or i.filename == "data.pkl"]
        if len(pkls) != 1:
            raise BoundsError(f"{label} is not a torch.save checkpoint (expected one data.pkl, found {len(pkls)})")
        try:
            pkl = zf.read(pkls[0])
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise BoundsError(f"{label}: damaged zip entry data.pkl ({str(exc)[:200]})") from None
    scan = scan_pickle(pkl, 0, DATA_PKL_SCAN, label=f"{label} (data.pkl)")
    if scan.end != len(pkl):
        raise BoundsError(f"{label}: data.pkl has data after the end of the pickle")
