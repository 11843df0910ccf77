"""API keys: created by an operator (`python -m service keys ...`), stored salted and hashed.

A key is `dgk.<key id>.<secret>`: the id (not secret) finds the row by primary key, the 256-bit secret
proves possession. Rows hold a random salt and sha256(salt || key); the key itself is printed once and
never stored. Presented keys are compared with hmac.compare_digest. Revoking sets `revoked_at`; each
API process caches a row for `key_cache_s`, so a revocation takes effect within that.

Static keys from settings (`DIGGAN_API_KEYS=["tenant:sha256hex"]`) work beside the table, for
deployments that inject secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from service.core.db.engine import Database
from service.core.db.models import ApiKey
from service.core.db.sql import conditional_update
from service.core.db.types import db_now
from service.core.ids import is_valid_id, new_id
from service.core.quotas import OVERRIDABLE, Quotas
from service.core.settings import Settings

TOKEN_PREFIX = "dgk"
TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")  # tenants become object-key segments
_TOKEN_RE = re.compile(r"^dgk\.(key_[0-9a-f]{26})\.([A-Za-z0-9_-]{20,128})$")
DEFAULT_TENANT = "default"
CACHE_MAX = 10_000


class AuthError(Exception):
    """401: no key, or not a valid one."""


@dataclass(frozen=True)
class Principal:
    tenant: str
    key_id: str | None  # None: anonymous (loopback without auth)
    quotas: Quotas | None  # None: unlimited


@dataclass(frozen=True)
class KeyRecord:
    id: str
    tenant: str
    name: str
    salt: str
    sha256: str
    quotas: dict[str, Any]
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def public(self) -> dict[str, Any]:
        """What `keys list` shows: never the hash or the salt."""
        return {"id": self.id, "tenant": self.tenant, "name": self.name, "created_at": self.created_at.isoformat(),
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None, "quotas": self.quotas}


def hash_key(salt: str, key: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + key.encode()).hexdigest()


def _record(row: ApiKey) -> KeyRecord:
    return KeyRecord(id=row.id, tenant=row.tenant, name=row.name, salt=row.salt, sha256=row.sha256,
                     quotas=dict(row.quotas or {}), created_at=row.created_at, revoked_at=row.revoked_at)


class KeyStore:
    def __init__(self, db: Database, settings: Settings):
        self.db, self.settings = db, settings
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}
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
        with self.db.write() as s:
            row = ApiKey(id=key_id, tenant=tenant, name=(name or "")[:200], salt=salt, sha256=hash_key(salt, token),
                         quotas={k: v for k, v in (quotas or {}).items() if v is not None})
            s.add(row)
            s.flush()
            s.refresh(row)
            return _record(row), token

    def list(self) -> list[KeyRecord]:
        with self.db.read() as s:
            return [_record(r) for r in s.scalars(select(ApiKey).order_by(ApiKey.id))]

    def get(self, key_id: str) -> KeyRecord | None:
        if not is_valid_id(key_id, "key"):
            return None
        with self.db.read() as s:
            row = s.get(ApiKey, key_id)
            return _record(row) if row is not None else None

    def revoke(self, key_id: str) -> KeyRecord:
        with self.db.write() as s:
            s.execute(conditional_update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                      .values(revoked_at=db_now()))
        rec = self.get(key_id)
        if rec is None:
            raise KeyError(f"no key {key_id!r}; see `python -m service keys list`")
        with self._lock:
            self._cache.pop(key_id, None)
        return rec

    def has_active_keys(self) -> bool:
        with self.db.read() as s:
            return s.scalar(select(ApiKey.id).where(ApiKey.revoked_at.is_(None)).limit(1)) is not None

    # --- the request path
    def cached(self, key_id: str) -> tuple[bool, KeyRecord | None]:
        """(hit, record) from this process' cache, without touching the database."""
        with self._lock:
            hit = self._cache.get(key_id)
        if hit and time.monotonic() - hit[0] < self.settings.key_cache_s:
            return True, hit[1]
        return False, None

    def lookup(self, key_id: str) -> KeyRecord | None:
        """The row (also unknown ids are cached, so a flood of made-up ids costs one query per id)."""
        rec = self.get(key_id)
        with self._lock:
            self._cache[key_id] = (time.monotonic(), rec)
            if len(self._cache) > CACHE_MAX:  # bounded: drop the oldest half
                for k in sorted(self._cache, key=lambda k: self._cache[k][0])[: CACHE_MAX // 2]:
                    self._cache.pop(k, None)
        return rec

    def verify(self, presented: str | None, rec: KeyRecord | None) -> Principal:
        s = self.settings
        if rec is not None and presented and hmac.compare_digest(hash_key(rec.salt, presented), rec.sha256):
            if not rec.active:
                raise AuthError("this API key was revoked; ask for a new one")
            return Principal(rec.tenant, rec.id, Quotas.for_key(s, rec.quotas))
        if presented and not _TOKEN_RE.match(presented):
            digest = hashlib.sha256(presented.encode()).hexdigest()
            for entry in s.api_keys:
                tenant, _, expected = entry.partition(":")
                if expected and hmac.compare_digest(digest, expected.strip().lower()):
                    return Principal(tenant.strip(), f"static:{tenant.strip()}", Quotas.defaults(s))
        raise AuthError("invalid API key; send it as 'Authorization: Bearer <key>'")

    def authenticate(self, presented: str | None) -> Principal:
        """The principal of a presented key; AuthError when auth is on and the key is missing or wrong.
        Blocking (it may query the database); the API calls it off the event loop only on a cache miss."""
        s = self.settings
        if not s.auth_enabled:
            return Principal(DEFAULT_TENANT, None, Quotas.defaults(s) if s.quotas_for_anonymous else None)
        if not presented:
            raise AuthError("missing API key; send it as 'Authorization: Bearer <key>' (or 'X-API-Key: <key>')")
        m = _TOKEN_RE.match(presented)
        rec = None
        if m:
            hit, rec = self.cached(m.group(1))
            if not hit:
                rec = self.lookup(m.group(1))
        return self.verify(presented, rec)


def key_id_of(presented: str | None) -> str | None:
    m = _TOKEN_RE.match(presented or "")
    return m.group(1) if m else None
