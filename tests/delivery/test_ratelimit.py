"""The send-rate limiter: never more than N grants in any 1 s window, shared between processes via Redis."""

from __future__ import annotations

import os
import threading
import uuid

import pytest

from webapp import outbox
from webapp.extensions import db
from webapp.ratelimit import LocalRateLimiter, RedisRateLimiter, acquire
from webapp.services.chats import start_chat, validate_chat_request

from .conftest import drain_all


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def max_in_any_window(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_sliding_window_never_exceeds_the_rate_and_uses_it_fully():
    clock = FakeClock()
    limiter = LocalRateLimiter(30, clock=clock)
    grants = []
    for _ in range(300):
        acquire(limiter, sleep=clock.sleep)
        grants.append(clock.now)
    assert max_in_any_window(grants) == 30
    assert grants[-1] - grants[0] < 10.0  # 300 sends at 30/s take just under 10 s: the limit is used


def test_no_burst_after_an_idle_spell():
    clock = FakeClock()
    limiter = LocalRateLimiter(10, clock=clock)
    grants = []
    for _ in range(10):
        acquire(limiter, sleep=clock.sleep)
        grants.append(clock.now)
    clock.now += 0.5
    for _ in range(10):
        acquire(limiter, sleep=clock.sleep)
        grants.append(clock.now)
    assert max_in_any_window(grants) == 10


class Recording:
    """Wraps a limiter and records when each grant was given (by the limiter's own clock)."""

    def __init__(self, inner: LocalRateLimiter) -> None:
        self.inner, self.grants, self._lock = inner, [], threading.Lock()

    def try_acquire(self) -> float:
        with self._lock:
            wait = self.inner.try_acquire()
            if wait == 0:
                self.grants.append(self.inner._grants[-1])  # the time the limiter counted
            return wait


def test_outbox_sends_within_the_configured_rate(app, fake):
    app.config["OUTBOX_CONCURRENCY"] = 6
    limiter = Recording(LocalRateLimiter(20))
    app.extensions["rate_limiter"] = limiter
    for i in range(30):
        start_chat(validate_chat_request(f"+4477005{i:02d}123", f"+4477006{i:02d}456"))
    drain_all()
    assert len(fake.accepted) == 60
    assert len(limiter.grants) == 60
    assert max_in_any_window(limiter.grants) <= 20


def redis_client():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
    try:
        client.ping()
    except redis.ConnectionError:
        if os.environ.get("CI"):
            raise
        pytest.skip("Redis is not running")
    return client


@pytest.mark.redis
def test_redis_limiter_is_shared_between_instances():
    client = redis_client()
    key = f"test:sends:{uuid.uuid4().hex}"
    one, two = RedisRateLimiter(client, 5, key=key), RedisRateLimiter(client, 5, key=key)
    granted = [lim.try_acquire() == 0 for lim in (one, two, one, two, one)]
    assert all(granted)
    assert one.try_acquire() > 0 and two.try_acquire() > 0  # the window is full for both "processes"
    other = RedisRateLimiter(client, 5, key=key + ":other")
    assert other.try_acquire() == 0
    client.delete(key, key + ":other")


@pytest.mark.redis
def test_redis_limiter_grants_again_after_the_window():
    import time

    client = redis_client()
    key = f"test:sends:{uuid.uuid4().hex}"
    limiter = RedisRateLimiter(client, 15, key=key, window=0.2)  # 3 per 0.2 s
    assert [limiter.try_acquire() == 0 for _ in range(4)] == [True, True, True, False]
    time.sleep(0.25)
    assert limiter.try_acquire() == 0
    client.delete(key)
    assert db is not None and outbox is not None
