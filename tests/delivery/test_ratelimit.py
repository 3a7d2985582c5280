"""The send-rate limiter: never more than N grants in any 1 s window, evenly paced, shared via Redis."""

from __future__ import annotations

import itertools
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
    burst_start = len(grants)
    for _ in range(10):
        acquire(limiter, sleep=clock.sleep)
        grants.append(clock.now)
    assert max_in_any_window(grants) == 10
    assert grants[burst_start + 1] - grants[burst_start] >= 0.1  # paced, not a burst after the pause


def test_grants_are_evenly_paced():
    clock = FakeClock()
    limiter = LocalRateLimiter(30, clock=clock)
    grants = []
    for _ in range(31):
        acquire(limiter, sleep=clock.sleep)
        grants.append(clock.now)
    assert min(b - a for a, b in itertools.pairwise(grants)) >= 1 / 30


class Recording:
    """Wraps a limiter and records when each grant was given (by the limiter's own clock)."""

    def __init__(self, inner: LocalRateLimiter) -> None:
        self.inner, self.grants, self._lock = inner, [], threading.Lock()

    def try_acquire(self) -> float:
        with self._lock:
            wait = self.inner.try_acquire()
            if wait == 0:
                self.grants.append(self.inner.last_grant)  # the time the limiter counted
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
    assert one.try_acquire() == 0
    wait = two.try_acquire()  # the other "process" shares the schedule: next slot in ~0.2 s
    assert 0.1 < wait <= 0.2
    other = RedisRateLimiter(client, 5, key=key + ":other")
    assert other.try_acquire() == 0
    client.delete(key, key + ":other")


@pytest.mark.redis
def test_redis_limiter_grants_again_after_the_window():
    import time

    client = redis_client()
    key = f"test:sends:{uuid.uuid4().hex}"
    limiter = RedisRateLimiter(client, 10, key=key)  # one grant every 0.1 s
    assert [limiter.try_acquire() == 0 for _ in range(3)] == [True, False, False]
    time.sleep(0.15)
    assert limiter.try_acquire() == 0
    grants = []
    start = time.monotonic()
    while len(grants) < 5:
        acquire(limiter)
        grants.append(time.monotonic())
    assert grants[-1] - start >= 0.35  # 5 grants, 4 intervals of 0.1 s after the first
    client.delete(key)
    assert db is not None and outbox is not None
