"""A local-directory object store (the embedded default).

Atomic writes: temp file in the same directory, fsync, os.replace, fsync of the
directory; readers therefore never see a half-written object, even after a crash.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from .base import (
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    StorageError,
    StorageFull,
    StorageUnavailable,
    validate_key,
    validate_prefix,
)

_TMP_PREFIX = ".tmp-"  # temp files are skipped by list() and never returned as objects
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)


def atomic_write(dest: Path, write: Callable[[BinaryIO], object], what: str) -> None:
    """Write `dest` atomically via `write(fileobj)` (its return value is ignored); ENOSPC becomes StorageFull
    with no temp left behind."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno in _NO_SPACE:
            raise StorageFull(
                f"no space left on the storage disk while writing {what}; "
                "free disk space under the data directory and retry (nothing was changed)"
            ) from e
        raise StorageError(f"could not write {what}: {e.strerror or e}") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(dest.parent)


class LocalStore(ObjectStore):
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self._check_not_dir(key)
        atomic_write(self._path(key), lambda f: f.write(data), key)

    def put_file(self, key: str, path: str | Path, content_type: str = "application/octet-stream") -> None:
        self._check_not_dir(key)
        with open(path, "rb") as src:
            atomic_write(self._path(key), lambda f: shutil.copyfileobj(src, f, 1 << 20), key)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key) from None

    def get_file(self, key: str, dest_path: str | Path) -> None:
        src = self._path(key)
        if not src.is_file():
            raise ObjectNotFound(key)
        with open(src, "rb") as s:
            atomic_write(Path(dest_path), lambda f: shutil.copyfileobj(s, f, 1 << 20), str(dest_path))

    def iter_bytes(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        # Open eagerly so a missing key raises here, not on the first next().
        try:
            f = open(self._path(key), "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key) from None

        def gen() -> Iterator[bytes]:
            with f:
                while chunk := f.read(chunk_size):
                    yield chunk

        return gen()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        p = self._path(key)
        if not p.is_file():
            raise ObjectNotFound(key)
        return p.stat().st_size

    def list(self, prefix: str) -> list[ObjectInfo]:
        validate_prefix(prefix)
        # Walk only the deepest directory the prefix names, then filter by string prefix (S3 semantics).
        base = self.root.joinpath(*prefix.split("/")[:-1]) if "/" in prefix else self.root
        out: list[ObjectInfo] = []
        if not base.is_dir():
            return out
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.startswith(_TMP_PREFIX):
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if not key.startswith(prefix):
                    continue
                try:
                    st = full.stat()
                except FileNotFoundError:
                    continue  # deleted while listing
                out.append(ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, timezone.utc)))
        out.sort(key=lambda o: o.key)
        return out

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        for info in self.list(prefix):
            self.delete(info.key)
        self._prune_empty_dirs(prefix)

    def presigned_get_url(self, key: str, expires_seconds: int = 900) -> str | None:
        return None

    def ping(self) -> None:
        if not self.root.is_dir():
            raise StorageUnavailable(f"storage directory {self.root} does not exist")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageUnavailable(f"storage directory {self.root} is not writable")
        try:  # a real write: catches read-only mounts that os.access misses
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=_TMP_PREFIX):
                pass
        except OSError as e:
            raise StorageUnavailable(f"storage directory {self.root} is not writable: {e}") from e

    def _check_not_dir(self, key: str) -> None:
        if self._path(key).is_dir():
            raise StorageError(f"key {key!r} is a prefix of other objects")

    def _prune_empty_dirs(self, prefix: str) -> None:
        start = self.root.joinpath(*[p for p in prefix.split("/") if p]) if prefix else None
        if start is None or not start.is_dir():
            return
        for dirpath, _dirs, _files in sorted(os.walk(start), key=lambda t: -len(t[0])):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass
        parent = start.parent
        while parent != self.root and parent.is_relative_to(self.root):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
