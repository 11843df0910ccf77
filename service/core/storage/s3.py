"""S3 / MinIO backend of ObjectStore, on the `minio` SDK.

Failure handling, in one place (`S3Store._call`):
- connection errors, timeouts and 5xx/429/SlowDown answers are retried with exponential
  backoff and jitter, for at most `RetryPolicy.attempts` tries and `RetryPolicy.max_seconds`
  in all (the connect timeout of each try is cut to what is left of that budget), then
  `StorageUnavailable` naming the endpoint, the operation and the last error;
- NoSuchKey becomes `ObjectNotFound`; a missing bucket or rejected credentials become
  `StorageUnavailable` at once (retrying cannot fix them); anything else `StorageError`.
urllib3 does no retries of its own (`retries=False`): two retry layers would multiply.

Atomicity: an S3 PUT (and a multipart upload, which only appears on Complete) replaces
the object whole, so readers see the old or the new object, never a part of one.

The constructor does no network I/O: the bucket is made (race-safe) on first use or by
`ping()`, so the API and workers can start before MinIO and report it as unhealthy.
"""

from __future__ import annotations

import contextvars
import io
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, S3Error, ServerError
from minio.helpers import check_bucket_name

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
from .local import atomic_write

log = logging.getLogger(__name__)

T = TypeVar("T")

PART_SIZE = 16 * 1024 * 1024  # multipart above this; the SDK's minimum part is 5 MiB
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4 limit

_MISSING_KEY = {"NoSuchKey", "NoSuchObject", "NoSuchVersion"}
_BAD_CREDENTIALS = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}
_RETRY_CODES = {
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeTooSkewed",  # transient while a container's clock settles
    "XMinioServerNotInitialized",
    "XMinioReadQuorum",
    "XMinioWriteQuorum",
    "OperationAborted",
}
_FULL_CODES = {"XMinioStorageFull", "XMinioAdminBucketQuotaExceeded", "QuotaExceeded"}

# Monotonic deadline of the operation running in this thread/context: the pool below
# cuts each connect timeout to it, so a black-holed endpoint cannot overrun the budget.
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("diggan_s3_deadline", default=None)


@dataclass(frozen=True)
class RetryPolicy:
    """How long an S3 operation keeps trying before StorageUnavailable.

    attempts:    tries in all (1 = no retry).
    max_seconds: budget from the first try; no sleep or new try starts past it.
    base_delay:  first backoff; doubles each retry, capped at max_delay, with jitter
                 (half fixed, half random) so restarted workers do not retry in lockstep.
    """

    attempts: int = 5
    max_seconds: float = 20.0
    base_delay: float = 0.1
    max_delay: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be >= 1")
        if self.max_seconds <= 0 or self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("RetryPolicy times must be positive")

    def delay(self, retry_index: int) -> float:
        """Sleep before retry number `retry_index` (0-based)."""
        cap = min(self.max_delay, self.base_delay * (2**retry_index))
        return cap / 2 + random.uniform(0, cap / 2)


_LIVE_STORES: weakref.WeakSet[S3Store] = weakref.WeakSet()


def _reset_stores_after_fork() -> None:
    for store in list(_LIVE_STORES):
        store._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_stores_after_fork)


class _DeadlinePoolManager(urllib3.PoolManager):
    """A PoolManager whose connect timeout never outlasts the running operation's budget."""

    def __init__(self, connect_timeout: float, read_timeout: float, **kw: Any) -> None:
        super().__init__(timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout), retries=False, **kw)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout

    def urlopen(self, method: str, url: str, redirect: bool = True, **kw: Any):  # type: ignore[override]
        deadline = _deadline.get()
        if deadline is not None and "timeout" not in kw:
            left = max(0.05, deadline - time.monotonic())
            if left < self._connect_timeout:
                # Only connect is cut: the read timeout also governs a stream read later.
                kw["timeout"] = urllib3.Timeout(connect=left, read=self._read_timeout)
        return super().urlopen(method, url, redirect=redirect, **kw)


def _split_endpoint(endpoint: str, secure: bool) -> tuple[str, bool]:
    """Accept "host:port" (minio style) and also "http(s)://host:port"."""
    if "://" in endpoint:
        parts = urlsplit(endpoint)
        if parts.path not in ("", "/"):
            raise ValueError(f"S3 endpoint {endpoint!r} must not have a path")
        return parts.netloc, parts.scheme == "https"
    return endpoint.rstrip("/"), secure


def _describe(exc: BaseException) -> str:
    if isinstance(exc, S3Error):
        return f"{exc.code}: {exc.message}"
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."


class S3Store(ObjectStore):
    """ObjectStore on an S3-compatible endpoint (MinIO, AWS S3, moto, ...).

    endpoint:        "host:port" (or "http(s)://host:port", which also sets `secure`).
    bucket:          created on first use when missing (`create_bucket=False` to forbid).
    retry:           RetryPolicy for every operation but ping().
    connect_timeout / read_timeout: per request, seconds.
    ping_timeout:    connect and read timeout of ping(), which is tried once.
    public_endpoint: host:port that clients outside the deployment reach the store at
                     (e.g. "localhost:9000" when `endpoint` is "minio:9000"); presigned
                     URLs are signed for it. Needs no network: region defaults to us-east-1.
    """

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        secure: bool = False,
        region: str | None = None,
        retry: RetryPolicy | None = None,
        *,
        connect_timeout: float = 3.0,
        read_timeout: float = 30.0,
        ping_timeout: float = 2.0,
        create_bucket: bool = True,
        public_endpoint: str | None = None,
    ) -> None:
        check_bucket_name(bucket, strict=True)  # ValueError now, not on the first request
        host, secure = _split_endpoint(endpoint, secure)
        self.endpoint = host
        self.secure = secure
        self.bucket = bucket
        self.region = region
        self.retry = retry or RetryPolicy()
        self.create_bucket = create_bucket
        self._http = _DeadlinePoolManager(connect_timeout, read_timeout, maxsize=16)
        self._client = Minio(host, access_key, secret_key, secure=secure, region=region, http_client=self._http)
        # ping() must answer fast even when the main pool's timeouts are long.
        self._ping_http = _DeadlinePoolManager(ping_timeout, ping_timeout, maxsize=2)
        self._ping_client = Minio(
            host, access_key, secret_key, secure=secure, region=region, http_client=self._ping_http
        )
        if public_endpoint:
            pub_host, pub_secure = _split_endpoint(public_endpoint, secure)
            # Presigning is pure computation once the region is known: no request to a
            # host that may not be reachable from inside the deployment.
            self._presign_client = Minio(
                pub_host, access_key, secret_key, secure=pub_secure, region=region or "us-east-1"
            )
        else:
            self._presign_client = self._client
        self._bucket_ready = False
        self._bucket_lock = threading.Lock()
        _LIVE_STORES.add(self)

    def _after_fork_in_child(self) -> None:
        # A Celery prefork child must not share the parent's pooled sockets (two processes
        # reading one HTTP connection), nor inherit a lock some parent thread held.
        self._http.clear()
        self._ping_http.clear()
        self._bucket_lock = threading.Lock()

    def __repr__(self) -> str:
        scheme = "https" if self.secure else "http"
        return f"S3Store({scheme}://{self.endpoint}/{self.bucket})"

    # ------------------------------------------------------------------ retry core

    def _classify(self, exc: BaseException, op: str, key: str | None) -> BaseException | None:
        """None when `exc` is worth retrying, else the exception to raise."""
        where = f"{self.bucket}/{key}" if key else self.bucket
        if isinstance(exc, S3Error):
            code = exc.code or ""
            if code in _MISSING_KEY:
                return ObjectNotFound(key or where)
            if code == "NoSuchBucket":
                self._bucket_ready = False  # deleted under us: the next call makes it again
                return StorageUnavailable(f"bucket {self.bucket!r} does not exist on S3 endpoint {self.endpoint}")
            if code in _BAD_CREDENTIALS:
                return StorageUnavailable(
                    f"S3 endpoint {self.endpoint} rejected the credentials for {op} {where} ({code}); "
                    "check DIGGAN_S3_ACCESS_KEY / DIGGAN_S3_SECRET_KEY"
                )
            if code in _FULL_CODES:
                return StorageFull(f"S3 endpoint {self.endpoint} is out of space or quota ({code}) during {op} {where}")
            status = getattr(exc.response, "status", 0) or 0
            if code in _RETRY_CODES or status >= 500 or status == 429:
                return None
            return StorageError(f"S3 {op} {where} failed on {self.endpoint}: {_describe(exc)}")
        if isinstance(exc, ServerError):
            if exc.status_code >= 500 or exc.status_code == 429:
                return None
            return StorageError(f"S3 {op} {where} failed on {self.endpoint}: {_describe(exc)}")
        if isinstance(exc, InvalidResponseError):
            # Non-XML answer: typically a proxy's 502/503 page while MinIO restarts.
            status = getattr(exc, "_code", 0) or 0
            if status >= 500 or status == 429:
                return None
            # Something answers, but not S3: a wrong host/port is a configuration problem.
            return StorageUnavailable(
                f"S3 endpoint {self.endpoint} gave a non-S3 answer (HTTP {status}) to {op} {where}; "
                "is DIGGAN_S3_ENDPOINT the S3 API port?"
            )
        if isinstance(exc, (urllib3.exceptions.HTTPError, OSError)):
            return None  # refused, reset, timed out, DNS not (yet) resolving, truncated body
        return exc  # programming errors (ValueError, TypeError, ...) surface unchanged

    def _call(self, op: str, fn: Callable[[], T], key: str | None = None) -> T:
        policy = self.retry
        start = time.monotonic()
        deadline = start + policy.max_seconds
        last: BaseException | None = None
        attempt = 0
        while True:
            attempt += 1
            token = _deadline.set(deadline)
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - sorted out by _classify
                final = self._classify(exc, op, key)
                if final is exc:
                    raise
                if final is not None:
                    raise final from exc
                last = exc
            finally:
                _deadline.reset(token)
            pause = policy.delay(attempt - 1)
            if attempt >= policy.attempts or time.monotonic() + pause >= deadline:
                break
            log.warning(
                "S3 %s %s on %s failed (try %d/%d): %s; retrying in %.2f s",
                op, key or "", self.endpoint, attempt, policy.attempts, _describe(last), pause,
            )
            time.sleep(pause)
        elapsed = time.monotonic() - start
        assert last is not None
        raise StorageUnavailable(
            f"S3 endpoint {self.endpoint} unavailable: {op}{' ' + key if key else ''} failed "
            f"{attempt} time(s) in {elapsed:.1f} s; last error: {_describe(last)}"
        ) from last

    # ------------------------------------------------------------------ bucket

    def _make_bucket(self, client: Minio) -> None:
        if client.bucket_exists(self.bucket):
            return
        if not self.create_bucket:
            raise StorageUnavailable(f"bucket {self.bucket!r} does not exist on S3 endpoint {self.endpoint}")
        try:
            client.make_bucket(self.bucket, location=self.region)
            log.info("created bucket %s on %s", self.bucket, self.endpoint)
            self._abort_stale_multipart_uploads(client)
        except S3Error as exc:
            # Another process made it between our HEAD and PUT: that is success.
            if exc.code == "BucketAlreadyOwnedByYou":
                return
            if exc.code == "BucketAlreadyExists" and client.bucket_exists(self.bucket):
                return
            if exc.code == "BucketAlreadyExists":
                raise StorageUnavailable(
                    f"bucket name {self.bucket!r} is taken by another account on {self.endpoint}; "
                    "choose another DIGGAN_S3_BUCKET"
                ) from exc
            raise

    def _abort_stale_multipart_uploads(self, client: Minio) -> None:
        """A lifecycle rule on a bucket we made: multipart uploads a crashed writer left half done are
        aborted after a day, so they stop costing storage. (A deployment's minio-init sets the same rule.)"""
        from minio.commonconfig import ENABLED, Filter
        from minio.lifecycleconfig import AbortIncompleteMultipartUpload, LifecycleConfig, Rule

        rule = Rule(ENABLED, rule_filter=Filter(prefix=""), rule_id="abort-incomplete-multipart",
                    abort_incomplete_multipart_upload=AbortIncompleteMultipartUpload(days_after_initiation=1))
        try:
            client.set_bucket_lifecycle(self.bucket, LifecycleConfig([rule]))
        except S3Error as exc:  # a store without lifecycle support: say so, keep working
            log.warning("could not set the abort-incomplete-multipart lifecycle rule on %s: %s", self.bucket, exc.code)

    def ensure_bucket(self) -> None:
        """Make the bucket if it is missing (once per store; safe against concurrent makers)."""
        if self._bucket_ready:
            return
        with self._bucket_lock:
            if not self._bucket_ready:
                self._call("create bucket", lambda: self._make_bucket(self._client))
                self._bucket_ready = True

    # ------------------------------------------------------------------ writes

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        validate_key(key)
        self.ensure_bucket()
        data = bytes(data)

        def put() -> None:
            self._client.put_object(
                self.bucket, key, io.BytesIO(data), len(data), content_type=content_type, part_size=PART_SIZE
            )

        self._call("put", put, key)

    def put_file(self, key: str, path: str | Path, content_type: str = "application/octet-stream") -> None:
        validate_key(key)
        self.ensure_bucket()
        path = Path(path)

        def put() -> None:
            # Reopened on every try: a retried upload must start from byte 0.
            with open(path, "rb") as f:
                length = os.fstat(f.fileno()).st_size
                self._client.put_object(self.bucket, key, f, length, content_type=content_type, part_size=PART_SIZE)

        if not path.is_file():  # a local problem: not worth an endpoint retry
            raise FileNotFoundError(f"put_file {key}: no such file {path}")
        self._call("put", put, key)

    # ------------------------------------------------------------------ reads

    def get_bytes(self, key: str) -> bytes:
        validate_key(key)
        self.ensure_bucket()

        def get() -> bytes:
            resp = self._client.get_object(self.bucket, key)
            drained = False
            try:
                data = resp.read()
                drained = True
                return data
            finally:
                _release(resp, drained)

        return self._call("get", get, key)

    def iter_bytes(self, key: str, chunk_size: int = 1 << 20) -> _ObjectStream:
        """Stream the object. Opens eagerly (a missing key raises here, not on next()).
        A connection lost mid-stream is resumed with a Range request pinned to the same
        ETag (If-Match), so the chunks never mix two versions of an object. The returned
        iterator releases its connection when exhausted, closed, or garbage-collected."""
        validate_key(key)
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self.ensure_bucket()
        resp = self._call("get", lambda: self._client.get_object(self.bucket, key), key)
        return _ObjectStream(self, key, resp, chunk_size)

    def get_file(self, key: str, dest_path: str | Path) -> None:
        chunks = self.iter_bytes(key)  # ObjectNotFound here, before dest is touched

        def write(f) -> None:
            for chunk in chunks:
                f.write(chunk)

        with chunks:
            atomic_write(Path(dest_path), write, str(dest_path))

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
            return True
        except ObjectNotFound:
            return False

    def size(self, key: str) -> int:
        validate_key(key)
        self.ensure_bucket()
        stat = self._call("stat", lambda: self._client.stat_object(self.bucket, key), key)
        return int(stat.size or 0)

    def list(self, prefix: str) -> list[ObjectInfo]:
        validate_prefix(prefix)
        self.ensure_bucket()

        def list_all() -> list[ObjectInfo]:
            # Materialised inside the retried call: the SDK pages lazily.
            return [
                ObjectInfo(obj.object_name, int(obj.size or 0), obj.last_modified)
                for obj in self._client.list_objects(self.bucket, prefix=prefix or None, recursive=True)
                if not obj.is_dir
            ]

        out = self._call("list", list_all, prefix or "(all)")
        out.sort(key=lambda o: o.key)
        return out

    # ------------------------------------------------------------------ deletes

    def delete(self, key: str) -> None:
        validate_key(key)
        self.ensure_bucket()
        # S3 DELETE of a missing key succeeds: deletes are idempotent, as in LocalStore.
        self._call("delete", lambda: self._client.remove_object(self.bucket, key), key)

    def delete_prefix(self, prefix: str) -> None:
        keys = [info.key for info in self.list(prefix)]
        for i in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = keys[i : i + 1000]

            def remove(batch: list[str] = batch) -> list[Any]:
                # The SDK is lazy: nothing is sent until the error iterator is consumed.
                return list(self._client.remove_objects(self.bucket, [DeleteObject(k) for k in batch]))

            errors = self._call("delete prefix", remove, prefix or "(all)")
            errors = [e for e in errors if e.code not in _MISSING_KEY]
            if errors:
                first = errors[0]
                raise StorageError(
                    f"S3 delete of {len(errors)} object(s) under {prefix!r} failed on {self.endpoint}; "
                    f"first: {first.name}: {first.code} {first.message}"
                )

    # ------------------------------------------------------------------ misc

    def presigned_get_url(self, key: str, expires_seconds: int = 900) -> str | None:
        validate_key(key)
        expires_seconds = int(expires_seconds)
        if not 1 <= expires_seconds <= MAX_PRESIGN_SECONDS:
            raise ValueError(f"expires_seconds must be in [1, {MAX_PRESIGN_SECONDS}], got {expires_seconds}")
        # With no region configured the SDK asks the endpoint for the bucket's region once.
        return self._call(
            "presign",
            lambda: self._presign_client.presigned_get_object(
                self.bucket, key, expires=timedelta(seconds=expires_seconds)
            ),
            key,
        )

    def ping(self) -> None:
        """One quick try (ping_timeout): the bucket is reachable (made if missing), or
        StorageUnavailable saying why."""
        try:
            self._make_bucket(self._ping_client)
        except StorageUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure means "not available"
            final = self._classify(exc, "ping", None)
            if isinstance(final, StorageUnavailable):
                raise final from exc
            raise StorageUnavailable(f"S3 endpoint {self.endpoint} unavailable: {_describe(exc)}") from exc
        self._bucket_ready = True


def _release(resp: Any, drained: bool) -> None:
    """Give a GET's connection back. A fully read one goes back to the pool for reuse; a
    half-read one is closed first (reading the rest of a large object would waste time)."""
    if not drained:
        resp.close()
    resp.release_conn()


class _ObjectStream(Iterator[bytes]):
    """Chunks of one GET, resumable after a broken connection (see S3Store.iter_bytes)."""

    def __init__(self, store: S3Store, key: str, resp: Any, chunk_size: int) -> None:
        self._store = store
        self._key = key
        self._resp: Any = resp
        self._etag = resp.headers.get("ETag")
        self._chunk_size = chunk_size
        self._pos = 0

    def __iter__(self) -> _ObjectStream:
        return self

    def __next__(self) -> bytes:
        while self._resp is not None:
            try:
                chunk = self._resp.read(self._chunk_size)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                self._resume(exc)
                continue
            if not chunk:
                self._release(drained=True)
                break
            self._pos += len(chunk)
            return chunk
        raise StopIteration

    def _resume(self, exc: BaseException) -> None:
        store, key, pos = self._store, self._key, self._pos
        log.warning("S3 stream of %s from %s broke at byte %d (%s); resuming", key, store.endpoint, pos, _describe(exc))
        self._release()
        headers = {"If-Match": self._etag} if self._etag else None
        try:
            self._resp = store._call(
                "resume get",
                lambda: store._client.get_object(store.bucket, key, offset=pos, request_headers=headers),
                key,
            )
        except StorageError as err:
            cause = err.__cause__
            if isinstance(cause, S3Error) and cause.code == "PreconditionFailed":
                raise StorageError(f"{key} was replaced while it was being read; read it again") from err
            raise

    def _release(self, drained: bool = False) -> None:
        resp, self._resp = self._resp, None
        if resp is not None:
            _release(resp, drained)

    def close(self) -> None:
        self._release()

    def __enter__(self) -> _ObjectStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._release()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


__all__ = ["RetryPolicy", "S3Store", "PART_SIZE"]
