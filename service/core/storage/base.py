"""The object-store interface every backend implements (see docs/design.md).

Keys are `/`-separated and come from server-generated ids only, never from
user-supplied file names. Writes are atomic: a reader sees the old object or the
new one, never a partial one.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any


class StorageError(Exception):
    """Base class of every storage failure."""


class ObjectNotFound(StorageError, KeyError):
    """The key does not exist."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "object not found"


class StorageUnavailable(StorageError):
    """The backend cannot be reached or used right now (network, permissions, outage)."""


class StorageFull(StorageError):
    """No space left for the write; nothing was changed."""


class InvalidKey(StorageError, ValueError):
    """A key that could escape the store's root or is otherwise malformed."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: datetime


_KEY_CHARS = re.compile(r"^[A-Za-z0-9._\-/]+$")


def validate_key(key: str) -> str:
    """Reject keys that are empty, absolute, contain '..' segments or odd characters."""
    if not isinstance(key, str) or not key or len(key) > 1024:
        raise InvalidKey(f"invalid object key {key!r}")
    if key.startswith("/") or "\\" in key or not _KEY_CHARS.match(key):
        raise InvalidKey(f"invalid object key {key!r}: must be relative and use [A-Za-z0-9._-/]")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidKey(f"invalid object key {key!r}: empty, '.' or '..' segment")
    return key


def validate_prefix(prefix: str) -> str:
    """Like validate_key but '' (everything) and a trailing '/' are allowed."""
    if prefix == "":
        return prefix
    validate_key(prefix.rstrip("/") or "x")
    return prefix


class ObjectStore(ABC):
    """One small interface, two backends (LocalStore, S3Store)."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None: ...

    @abstractmethod
    def put_file(self, key: str, path: str | Path, content_type: str = "application/octet-stream") -> None: ...

    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def get_file(self, key: str, dest_path: str | Path) -> None: ...

    @abstractmethod
    def iter_bytes(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def size(self, key: str) -> int: ...

    @abstractmethod
    def list(self, prefix: str) -> list[ObjectInfo]: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def delete_prefix(self, prefix: str) -> None: ...

    @abstractmethod
    def presigned_get_url(self, key: str, expires_seconds: int = 900) -> str | None: ...

    @abstractmethod
    def ping(self) -> None: ...

    # Conveniences built on the abstract methods (backends need not override them).
    def put_json(self, key: str, obj: Any) -> None:
        self.put_bytes(key, json.dumps(obj, separators=(",", ":"), default=str).encode(), "application/json")

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))
