"""Request-rate limits shared by every API replica: in Redis (the `limits` package, a moving window)
when `redis_url` is set, else in the database (fixed windows, one upsert per request).

A key's quota is `requests_per_s` with a `burst`: both limiters allow `burst` requests per window of
burst / rate seconds (rounded up to whole seconds), the same long-run rate. The database limiter's
fixed windows can let up to twice the burst through across a window boundary; Redis' moving window
cannot. Windows use the API host's clock (a skew of a second between replicas only shifts a window).
"""

from __future__ import annotations

import math
import time
from typing import Protocol


from service.core.db.engine import Database
from service.core.db.models import RateWindow
from service.core.db.sql import insert_for
from service.core.quotas import QuotaExceeded


def window_seconds(rate: float, burst: int) -> int:
    return max(1, math.ceil(burst / rate))


def _exceeded(rate: float, burst: int, retry_after: float) -> QuotaExceeded:
    return QuotaExceeded(f"rate limit of {rate:g} requests/s (burst {burst}) exceeded; retry after "
                         f"{math.ceil(retry_after)} s", retry_after)


class RateLimiter(Protocol):
    def take(self, bucket: str, rate: float, burst: int) -> None:
        """Count one request; QuotaExceeded when the bucket is empty."""


class RedisRateLimiter:
    def __init__(self, redis_url: str):
        from limits.storage import storage_from_string
        from limits.strategies import MovingWindowRateLimiter

        self.storage = storage_from_string(redis_url)
        self.limiter = MovingWindowRateLimiter(self.storage)

    def take(self, bucket: str, rate: float, burst: int) -> None:
        from limits import RateLimitItemPerSecond

        item = RateLimitItemPerSecond(burst, window_seconds(rate, burst), namespace="diggan")
        if not self.limiter.hit(item, bucket):
            reset = self.limiter.get_window_stats(item, bucket).reset_time
            raise _exceeded(rate, burst, max(1.0, reset - time.time()))


class DatabaseRateLimiter:
    def __init__(self, db: Database):
        self.db = db

    def take(self, bucket: str, rate: float, burst: int) -> None:
        length = window_seconds(rate, burst)
        now = time.time()
        index = int(now // length)
        with self.db.write() as s:
            stmt = insert_for(s, RateWindow).values(bucket=bucket[:120], window_index=index, count=1,
                                                    expires_at=(index + 1) * length)
            stmt = stmt.on_conflict_do_update(index_elements=["bucket", "window_index"],
                                              set_={"count": RateWindow.count + 1})
            count = s.execute(stmt.returning(RateWindow.count)).scalar_one()
        if count > burst:
            raise _exceeded(rate, burst, (index + 1) * length - now)


def build_rate_limiter(db: Database, redis_url: str | None) -> RateLimiter:
    return RedisRateLimiter(redis_url) if redis_url else DatabaseRateLimiter(db)


__all__ = ["DatabaseRateLimiter", "RateLimiter", "RedisRateLimiter", "build_rate_limiter"]
