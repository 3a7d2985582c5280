"""Send-rate limiting: at most N sends in any 1 s window, evenly paced, across threads and processes.

The limiter paces grants at least 1/N s apart (GCRA, the "virtual scheduling" leaky bucket, with no burst):
so no 1 s window ever holds more than N sends, and, unlike a sliding window or a token bucket that lets N
go at once, the requests reach Vonage spread out, so the jitter between granting and arriving cannot pile
them into one of Vonage's 1 s windows. Under a backlog the limit is used in full (N per second).
Times are whole microseconds, so float rounding can never squeeze an extra send into a window.

`RateLimiter` is the interface the outbox uses. `LocalRateLimiter` serves one process (the default);
`RedisRateLimiter` shares the schedule between every worker process that points at the same Redis key
(issue 5: several `flask outbox work` processes), chosen by `RATE_LIMIT_REDIS_URL`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol


def _interval_us(rate: float, window: float) -> int:
    if rate <= 0:
        raise ValueError("rate must be positive")
    return max(math.ceil(window * 1_000_000 / rate), 1)


class RateLimiter(Protocol):
    def try_acquire(self) -> float:
        """Take one send slot now and return 0.0, or return the seconds to wait before trying again."""
        ...


def acquire(limiter: RateLimiter, sleep: Callable[[float], Any] = time.sleep) -> None:
    """Block until `limiter` grants one send slot."""
    while (wait := limiter.try_acquire()) > 0:
        sleep(wait)


class LocalRateLimiter:
    """In-process pacing: one grant every window/rate seconds at most (thread-safe)."""

    def __init__(self, rate: float, window: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_us = _interval_us(rate, window)
        self._clock = clock
        self._next_us: int | None = None  # the earliest time of the next grant
        self.last_grant: float | None = None
        self._lock = threading.Lock()

    def try_acquire(self) -> float:
        with self._lock:
            now = self._clock()
            now_us = math.ceil(now * 1_000_000)
            if self._next_us is not None and now_us < self._next_us:
                return (self._next_us - now_us) / 1_000_000
            self._next_us = now_us + self.interval_us
            self.last_grant = now
            return 0.0


# KEYS[1]: the time of the next grant (µs); ARGV: now (µs), interval (µs). Runs atomically in Redis.
_REDIS_SCRIPT = """
local now = tonumber(ARGV[1])
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
if now < nxt then
  return nxt - now
end
redis.call('SET', KEYS[1], now + tonumber(ARGV[2]), 'PX', 60000)
return 0
"""


class RedisRateLimiter:
    """The same pacing, kept in Redis so every process sending for one API key shares it.

    Time comes from the Redis server (`TIME`), so the processes' clocks need not agree.
    """

    def __init__(self, client: Any, rate: float, key: str = "smsproxy:sends", window: float = 1.0) -> None:
        self.interval_us = _interval_us(rate, window)
        self.key = key
        self._redis = client
        self._script = client.register_script(_REDIS_SCRIPT)

    def try_acquire(self) -> float:
        seconds, micros = self._redis.time()
        now_us = int(seconds) * 1_000_000 + int(micros)
        wait_us = int(self._script(keys=[self.key], args=[now_us, self.interval_us]))
        return wait_us / 1_000_000


def build_rate_limiter(rate: float, redis_url: str = "", key: str = "smsproxy:sends") -> RateLimiter:
    if redis_url:
        import redis

        return RedisRateLimiter(redis.Redis.from_url(redis_url), rate, key=key)
    return LocalRateLimiter(rate)
