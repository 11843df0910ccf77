"""Request-rate limits shared by every API replica: token buckets in Redis (an atomic Lua script) when
`redis_url` is set, else in the database (one row per key, updated under its row lock).

A key's quota is `requests_per_s` with a `burst`: the bucket holds at most `burst` tokens, refills at
`requests_per_s`, and each request takes one; an empty bucket answers 429 with the seconds until the
next token. The refill uses the API hosts' clock (Redis: the Redis server's), so replicas agree to
within their clock skew.
"""

from __future__ import annotations

import math
import time
from typing import Protocol

from sqlalchemy import select

from service.core.db.engine import Database
from service.core.db.models import RateBucket
from service.core.db.sql import insert_ignore
from service.core.quotas import QuotaExceeded

# KEYS[1]: the bucket; ARGV: rate, burst. Returns {allowed (0/1), seconds until a token (as a string)}.
_TOKEN_BUCKET_LUA = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens, stamp = tonumber(state[1]), tonumber(state[2])
if tokens == nil then tokens, stamp = burst, now end
tokens = math.min(burst, tokens + (now - stamp) * rate)
local allowed, wait = 0, (1 - tokens) / rate
if tokens >= 1 then tokens, allowed, wait = tokens - 1, 1, 0 end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'stamp', now)
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return {allowed, tostring(wait)}
"""


def _exceeded(rate: float, burst: int, retry_after: float) -> QuotaExceeded:
    return QuotaExceeded(f"rate limit of {rate:g} requests/s (burst {burst}) exceeded; retry after "
                         f"{math.ceil(retry_after)} s", retry_after)


def refill(tokens: float, stamp: float, now: float, rate: float, burst: int) -> tuple[bool, float, float]:
    """(allowed, tokens left, seconds until the next token) for one request."""
    tokens = min(float(burst), tokens + max(0.0, now - stamp) * rate)
    if tokens >= 1.0:
        return True, tokens - 1.0, 0.0
    return False, tokens, (1.0 - tokens) / rate


class RateLimiter(Protocol):
    def take(self, bucket: str, rate: float, burst: int) -> None:
        """Count one request; QuotaExceeded when the bucket is empty."""


class RedisRateLimiter:
    def __init__(self, redis_url: str):
        import redis

        self.client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self.script = self.client.register_script(_TOKEN_BUCKET_LUA)

    def take(self, bucket: str, rate: float, burst: int) -> None:
        allowed, wait = self.script(keys=[f"diggan:rate:{bucket}"], args=[rate, burst])
        if not int(allowed):
            raise _exceeded(rate, burst, float(wait))


class DatabaseRateLimiter:
    def __init__(self, db: Database):
        self.db = db

    def take(self, bucket: str, rate: float, burst: int) -> None:
        bucket = bucket[:120]
        with self.db.write() as s:
            now = time.time()
            insert_ignore(s, RateBucket, {"bucket": bucket, "tokens": float(burst), "stamp": now}, ["bucket"])
            row = s.execute(select(RateBucket).where(RateBucket.bucket == bucket).with_for_update()).scalar_one()
            allowed, row.tokens, wait = refill(row.tokens, row.stamp, now, rate, burst)
            row.stamp = max(row.stamp, now)
        if not allowed:
            raise _exceeded(rate, burst, wait)


def build_rate_limiter(db: Database, redis_url: str | None) -> RateLimiter:
    return RedisRateLimiter(redis_url) if redis_url else DatabaseRateLimiter(db)
