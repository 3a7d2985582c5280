"""Send-rate limiting: at most N sends in any window of one second, across threads (and processes).

A sliding-window log, not a token bucket: the bucket would allow a burst of N right after an idle spell on
top of the N just sent, which Vonage counts as over the limit (status 1, Throttled). Here any 1 s window holds
at most N sends, and under a backlog the limit is used in full.

`RateLimiter` is the interface the outbox uses. `LocalRateLimiter` serves one process (the default, SQLite);
`RedisRateLimiter` shares the window between every worker process that points at the same Redis key
(issue 5: several `flask outbox work` processes), chosen by `RATE_LIMIT_REDIS_URL`.
"""

from __future__ import annotations

import collections
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol


class RateLimiter(Protocol):
    def try_acquire(self) -> float:
        """Take one send slot now and return 0.0, or return the seconds to wait before trying again."""
        ...


def acquire(limiter: RateLimiter, sleep: Callable[[float], Any] = time.sleep) -> None:
    """Block until `limiter` grants one send slot."""
    while (wait := limiter.try_acquire()) > 0:
        sleep(wait)


class LocalRateLimiter:
    """In-process sliding window of the last `rate` grants (thread-safe)."""

    def __init__(self, rate: float, window: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.limit = max(int(rate * window), 1)
        self.window = window
        self._clock = clock
        self._grants: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def try_acquire(self) -> float:
        with self._lock:
            now = self._clock()
            while self._grants and now - self._grants[0] >= self.window:
                self._grants.popleft()
            if len(self._grants) < self.limit:
                self._grants.append(now)
                return 0.0
            return max(self.window - (now - self._grants[0]), 0.0005)


# KEYS[1]: the sorted set of grants; ARGV: now (ms), window (ms), limit, member. Runs atomically.
_REDIS_SCRIPT = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], window * 2)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(tonumber(oldest[2]) + window - now, 1)
"""


class RedisRateLimiter:
    """The same sliding window, kept in Redis so every process sending for one API key shares it.

    Time comes from the Redis server (`TIME`), so the processes' clocks need not agree.
    """

    def __init__(self, client: Any, rate: float, key: str = "smsproxy:sends", window: float = 1.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.limit = max(int(rate * window), 1)
        self.window_ms = int(window * 1000)
        self.key = key
        self._redis = client
        self._script = client.register_script(_REDIS_SCRIPT)

    def try_acquire(self) -> float:
        seconds, micros = self._redis.time()
        now_ms = seconds * 1000 + micros // 1000
        member = f"{now_ms}:{uuid.uuid4().hex}"
        wait_ms = int(self._script(keys=[self.key], args=[now_ms, self.window_ms, self.limit, member]))
        return wait_ms / 1000.0


def build_rate_limiter(rate: float, redis_url: str = "", key: str = "smsproxy:sends") -> RateLimiter:
    if redis_url:
        import redis

        return RedisRateLimiter(redis.Redis.from_url(redis_url), rate, key=key)
    return LocalRateLimiter(rate)
