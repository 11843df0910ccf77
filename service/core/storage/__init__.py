"""Object storage: one interface (ObjectStore), a local-directory and an S3/MinIO backend."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import (
    InvalidKey,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    StorageError,
    StorageFull,
    StorageUnavailable,
    validate_key,
)
from .local import LocalStore

if TYPE_CHECKING:
    from service.core.settings import Settings

__all__ = [
    "InvalidKey",
    "LocalStore",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "S3Store",
    "StorageError",
    "StorageFull",
    "StorageUnavailable",
    "build_store",
    "validate_key",
]


def __getattr__(name: str) -> Any:
    # Lazy: the S3 backend (and the minio SDK) is only imported when asked for.
    if name == "S3Store":
        from .s3 import S3Store

        return S3Store
    raise AttributeError(name)


def build_store(settings: Settings) -> ObjectStore:
    """The backend the settings select: `local` (a directory under data_dir) or `s3`."""
    if settings.storage == "local":
        return LocalStore(settings.storage_root)
    if settings.storage == "s3":
        from .s3 import RetryPolicy, S3Store

        return S3Store(
            retry=RetryPolicy(attempts=settings.s3_retry_attempts, max_seconds=settings.s3_retry_max_s),
            endpoint=settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else "",
            bucket=settings.s3_bucket,
            secure=settings.s3_secure,
            region=settings.s3_region,
            public_endpoint=settings.s3_public_endpoint,
        )
    raise ValueError(f"unknown storage backend {settings.storage!r}; use 'local' or 's3'")
