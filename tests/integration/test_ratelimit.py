"""Request-rate token buckets shared by API replicas: two limiter instances (two processes' worth) on one
backend draw from one bucket, on Redis and on each database."""

from __future__ import annotations

import time

import pytest

from service.core.db import Database, upgrade
from service.core.quotas import QuotaExceeded
from service.core.ratelimit import DatabaseRateLimiter, RedisRateLimiter, refill


@pytest.fixture(params=["redis", "database"])
def limiters(request, database_url):
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        yield RedisRateLimiter(url), RedisRateLimiter(url)
        return
    db = Database(database_url)
    upgrade(db)
    yield DatabaseRateLimiter(db), DatabaseRateLimiter(Database(database_url))
    db.dispose()


def test_two_replicas_share_one_bucket(limiters):
    a, b = limiters
    bucket = f"key-{time.monotonic_ns()}"
    for i in range(4):  # burst 4, taken alternately through both "replicas"
        (a if i % 2 else b).take(bucket, rate=0.5, burst=4)
    with pytest.raises(QuotaExceeded) as exc:
        a.take(bucket, rate=0.5, burst=4)
    assert 1 <= exc.value.retry_after <= 2  # one token every 2 s
    with pytest.raises(QuotaExceeded):
        b.take(bucket, rate=0.5, burst=4)
    a.take(f"{bucket}-other", rate=0.5, burst=4)  # another key: its own bucket


def test_the_bucket_refills_at_the_rate():
    assert refill(0.0, 100.0, 101.0, 2.0, 5) == (True, 1.0, 0.0)  # 1 s at 2/s: two tokens, one taken
    assert refill(4.0, 0.0, 1000.0, 2.0, 5) == (True, 4.0, 0.0)  # capped at the burst
    allowed, left, wait = refill(0.25, 10.0, 10.0, 0.5, 3)
    assert not allowed and left == 0.25 and wait == pytest.approx(1.5)
