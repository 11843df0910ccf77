"""API keys, quotas and request-rate limits.

Keys
----
A key is `dgk.<key id>.<secret>`: the id (not secret) finds the record in O(1), the 256-bit secret
proves possession. Records live in the object store under `system/api-keys/<id>.json` with a random
salt and `sha256(salt || key)`; the key itself is printed once by `python -m service keys create` and
never stored. Presented keys are compared with hmac.compare_digest. Revoking sets `revoked_at`
(records are never deleted, so "auth is on" can never silently turn off again); an API process caches
a record for `key_cache_s`, so a revocation takes effect within that.

Static keys from settings (`DIGGAN_API_KEYS=["tenant:sha256hex"]`) still work beside the store.

Quotas
------
Limits come from settings, overridden per key at creation. Usage is counted per tenant from the store
(active-jobs index, job records, object sizes); the request rate per key with a token bucket.

The token buckets are in-process: with N API processes a key gets up to N times its rate. That bounds
abuse well enough for one box; a shared limiter (Redis INCR + EXPIRE) would be the multi-host fix.
The concurrent-job check holds a process lock, so two simultaneous creates in one process cannot both
squeeze under the limit; across processes the limit can be exceeded by at most one job per process.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from service import keys as objkeys
from service.ids import is_valid_id, new_id
from service.settings import Settings
from service.storage import ObjectNotFound, ObjectStore

KEY_RECORDS_PREFIX = "system/api-keys/"
TOKEN_PREFIX = "dgk"
TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")  # tenants become object-key segments
_TOKEN_RE = re.compile(r"^dgk\.(key_[0-9a-f]{26})\.([A-Za-z0-9_-]{20,128})$")
DEFAULT_TENANT = "default"


class AuthError(Exception):
    """401: no key, or not a valid one."""


class QuotaExceeded(Exception):
    """429 with Retry-After."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


@dataclass(frozen=True)
class Quotas:
    concurrent_jobs: int
    total_kimg: float
    storage_bytes: int
    requests_per_s: float
    burst: int

    @classmethod
    def defaults(cls, s: Settings) -> "Quotas":
        return cls(s.quota_concurrent_jobs, s.quota_total_kimg, s.quota_storage_bytes, s.quota_requests_per_s,
                   s.quota_burst)

    @classmethod
    def for_key(cls, s: Settings, overrides: dict[str, Any] | None) -> "Quotas":
        base = asdict(cls.defaults(s))
        known = {f.name: f.type for f in fields(cls)}
        for k, v in (overrides or {}).items():
            if k in known and v is not None:
                base[k] = v
        return cls(**base)


OVERRIDABLE = tuple(f.name for f in fields(Quotas))


@dataclass(frozen=True)
class Principal:
    tenant: str
    key_id: str | None  # None: anonymous (loopback without keys) or a static settings key
    quotas: Quotas | None  # None: unlimited


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def hash_key(salt: str, key: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + key.encode()).hexdigest()


@dataclass
class KeyRecord:
    id: str
    tenant: str
    name: str
    salt: str
    sha256: str
    created_at: str
    revoked_at: str | None = None
    quotas: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def public(self) -> dict[str, Any]:
        """What `keys list` shows: never the hash or the salt."""
        return {"id": self.id, "tenant": self.tenant, "name": self.name, "created_at": self.created_at,
                "revoked_at": self.revoked_at, "quotas": self.quotas}


class KeyStore:
    def __init__(self, store: ObjectStore, settings: Settings):
        self.store, self.settings = store, settings
        self._cache: dict[str, tuple[float, KeyRecord]] = {}
        self._any: tuple[float, bool] | None = None
        self._lock = threading.Lock()

    # --- admin (the CLI)
    def create(self, tenant: str, name: str = "", quotas: dict[str, Any] | None = None) -> tuple[KeyRecord, str]:
        if not TENANT_RE.match(tenant or ""):
            raise ValueError(f"invalid tenant {tenant!r}: use 1-63 characters of a-z, 0-9, '-', '_' "
                             "(starting with a letter or digit)")
        bad = sorted(set(quotas or {}) - set(OVERRIDABLE))
        if bad:
            raise ValueError(f"unknown quota(s) {', '.join(bad)}; known: {', '.join(OVERRIDABLE)}")
        key_id = new_id("key")
        token = f"{TOKEN_PREFIX}.{key_id}.{secrets.token_urlsafe(32)}"
        salt = secrets.token_hex(16)
        rec = KeyRecord(id=key_id, tenant=tenant, name=(name or "")[:200], salt=salt, sha256=hash_key(salt, token),
                        created_at=_utcnow().isoformat(), quotas={k: v for k, v in (quotas or {}).items() if v is not None})
        self._put(rec)
        return rec, token

    def list(self) -> list[KeyRecord]:
        out = []
        for info in self.store.list(KEY_RECORDS_PREFIX):
            try:
                out.append(KeyRecord(**json.loads(self.store.get_bytes(info.key))))
            except (ObjectNotFound, TypeError, ValueError):
                continue
        return out

    def get(self, key_id: str) -> KeyRecord | None:
        if not is_valid_id(key_id, "key"):
            return None
        try:
            return KeyRecord(**json.loads(self.store.get_bytes(f"{KEY_RECORDS_PREFIX}{key_id}.json")))
        except ObjectNotFound:
            return None

    def revoke(self, key_id: str) -> KeyRecord:
        rec = self.get(key_id)
        if rec is None:
            raise KeyError(f"no key {key_id!r}; see `python -m service keys list`")
        if rec.revoked_at is None:
            rec.revoked_at = _utcnow().isoformat()
            self._put(rec)
        with self._lock:
            self._cache.pop(key_id, None)
        return rec

    def _put(self, rec: KeyRecord) -> None:
        self.store.put_bytes(f"{KEY_RECORDS_PREFIX}{rec.id}.json", json.dumps(asdict(rec)).encode(), "application/json")
        with self._lock:
            self._any = (time.monotonic(), True)

    # --- the request path
    def any_keys(self) -> bool:
        """Has any key ever been created? Cached: True for good (keys are never deleted), False for 1 s."""
        now = time.monotonic()
        with self._lock:
            if self._any and (self._any[1] or now - self._any[0] < 1.0):
                return self._any[1]
        found = bool(self.store.list(KEY_RECORDS_PREFIX))
        with self._lock:
            self._any = (now, found)
        return found

    def has_active_keys(self) -> bool:
        return any(r.active for r in self.list())

    def _cached(self, key_id: str) -> KeyRecord | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key_id)
            if hit and now - hit[0] < self.settings.key_cache_s:
                return hit[1]
        rec = self.get(key_id)
        if rec is not None:
            with self._lock:
                self._cache[key_id] = (now, rec)
                if len(self._cache) > 10_000:  # bounded: drop the oldest half
                    for k in sorted(self._cache, key=lambda k: self._cache[k][0])[:5_000]:
                        self._cache.pop(k, None)
        return rec

    def authenticate(self, presented: str | None) -> Principal:
        """The principal of a presented key; AuthError when auth is on and the key is missing or wrong."""
        s = self.settings
        if not (s.auth_required or s.api_keys or self.any_keys()):
            return Principal(DEFAULT_TENANT, None, Quotas.defaults(s) if s.quotas_for_anonymous else None)
        if not presented:
            raise AuthError("missing API key; send it as 'Authorization: Bearer <key>' (or 'X-API-Key: <key>')")
        m = _TOKEN_RE.match(presented)
        if m:
            rec = self._cached(m.group(1))
            if rec is not None and hmac.compare_digest(hash_key(rec.salt, presented), rec.sha256):
                if not rec.active:
                    raise AuthError("this API key was revoked; ask for a new one")
                return Principal(rec.tenant, rec.id, Quotas.for_key(s, rec.quotas))
        else:
            digest = hashlib.sha256(presented.encode()).hexdigest()
            for entry in s.api_keys:
                tenant, _, expected = entry.partition(":")
                if expected and hmac.compare_digest(digest, expected.strip().lower()):
                    return Principal(tenant.strip(), f"static:{tenant.strip()}", Quotas.defaults(s))
        raise AuthError("invalid API key; send it as 'Authorization: Bearer <key>'")


# --------------------------------------------------------------------------- rate limit


class RateLimiter:
    """Token buckets per key, in this process (see the module docstring)."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # id -> (tokens, last refill time)
        self._lock = threading.Lock()

    def take(self, bucket: str, rate: float, burst: int) -> None:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(bucket, (float(burst), now))
            tokens = min(float(burst), tokens + (now - last) * rate)
            if tokens < 1.0:
                self._buckets[bucket] = (tokens, now)
                wait = (1.0 - tokens) / rate
                raise QuotaExceeded(f"rate limit of {rate:g} requests/s (burst {burst}) exceeded; "
                                    f"retry after {math.ceil(wait)} s", wait)
            self._buckets[bucket] = (tokens - 1.0, now)
            if len(self._buckets) > 100_000:  # idle buckets are full ones: forgetting them changes nothing
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60}


# --------------------------------------------------------------------------- usage checks


_quota_lock = threading.Lock()


def quota_lock() -> threading.Lock:
    return _quota_lock


def storage_used(store: ObjectStore, tenant: str) -> int:
    return sum(o.size for o in store.list(objkeys.tenant_root(tenant)))


def check_storage(store: ObjectStore, principal: Principal, adding: int = 0) -> None:
    q = principal.quotas
    if q is None:
        return
    used = storage_used(store, principal.tenant)
    if used + adding > q.storage_bytes:
        raise QuotaExceeded(
            f"storage quota exceeded: {used + adding:,} bytes would be stored, the limit is {q.storage_bytes:,}; "
            "delete datasets you no longer need (DELETE /v1/datasets/{id})", 3600)


def check_new_job(jobs: Any, principal: Principal, kimg: float) -> None:
    """Concurrent jobs and total kimg; call with quota_lock() held until the job is recorded."""
    q = principal.quotas
    if q is None:
        return
    active = jobs.store.list(f"{objkeys.ACTIVE_PREFIX}{principal.tenant}/")
    if len(active) >= q.concurrent_jobs:
        raise QuotaExceeded(
            f"concurrent job quota reached: {len(active)} unfinished job(s), the limit is {q.concurrent_jobs}; "
            "wait for one to finish or cancel one (POST /v1/jobs/{id}/cancel)", 30)
    committed = 0.0
    prefix = objkeys.job_records_prefix(principal.tenant)
    for info in jobs.store.list(prefix):
        try:
            rec = jobs.get(principal.tenant, info.key[len(prefix):-len(".json")])
        except ObjectNotFound:
            continue
        committed += rec.progress.kimg if rec.terminal else max(rec.progress.total_kimg, rec.progress.kimg)
    if committed + kimg > q.total_kimg:
        raise QuotaExceeded(
            f"training quota exceeded: this job asks for {kimg:g} kimg, {committed:g} of {q.total_kimg:g} kimg "
            "are used or committed by your jobs; ask for a smaller kimg or a higher quota", 3600)
