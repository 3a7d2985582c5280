"""Slowing down guessing: failures per key (an operator name, a client address), checked and reserved atomically.

A `FailureThrottle` answers "may this attempt be checked now?" and, for keys that ask for it, reserves the
attempt before the caller checks the secret, so parallel attempts cannot all slip past the count (30 parallel
wrong passwords for one name get at most `free` checks; the rest wait). After `free` failures each further
attempt waits `base_delay`, doubling per failure up to `max_delay`; only one attempt at a time is then let
through. Keys are forgotten `forget_after` seconds after their last failure.

Kept in memory, per process: a restart forgets it, which is acceptable for slowing down guessing. Behind a
sticky load balancer (docs/deploy.md) each client keeps reaching the same process.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass
class _Entry:
    failures: int = 0
    in_flight: int = 0
    blocked_until: float = 0.0
    last_seen: float = 0.0
    precious: bool = False  # evicted last when memory is bounded (e.g. the name of a real account)


@dataclass(frozen=True)
class Key:
    """One thing attempts are counted against. `reserve`: count attempts in flight against `free` too."""

    name: str
    free: int
    reserve: bool = False


class FailureThrottle:
    def __init__(
        self,
        base_delay: float = 2.0,
        max_delay: float = 300.0,
        forget_after: float = 900.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.forget_after = forget_after
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    def acquire(self, keys: Iterable[Key]) -> int:
        """0 when the attempt may be checked now (and is reserved on the `reserve` keys), else the whole
        seconds to wait before trying again. Every 0 must be followed by exactly one `release`."""
        keys = list(keys)
        now = self._clock()
        with self._lock:
            wait = 0.0
            for key in keys:
                entry = self._entries.get(key.name)
                if entry is None:
                    continue
                if self._stale(entry, now):
                    del self._entries[key.name]
                    continue
                if entry.blocked_until > now:
                    wait = max(wait, entry.blocked_until - now)
                elif key.reserve and entry.failures + entry.in_flight >= key.free and entry.in_flight:
                    wait = max(wait, 1.0)  # past the free tries: one attempt at a time
            if wait > 0:
                return math.ceil(wait)
            for key in keys:
                if key.reserve:
                    entry = self._entry(key.name, now)
                    entry.in_flight += 1
                    entry.last_seen = now
            return 0

    def release(
        self, keys: Iterable[Key], *, failed: bool, count: Iterable[str] | None = None, precious: bool = False
    ) -> None:
        """End an attempt admitted by `acquire`. On failure, count it against the keys named in `count`
        (default: all). A success forgets the keys. `precious` marks the keys as worth keeping."""
        keys = list(keys)
        counted = {k.name for k in keys} if count is None else set(count)
        now = self._clock()
        with self._lock:
            for key in keys:
                entry = self._entries.get(key.name)
                if key.reserve and entry is not None and entry.in_flight > 0:
                    entry.in_flight -= 1
                if not failed:
                    if entry is not None and entry.in_flight == 0:
                        del self._entries[key.name]
                    continue
                if key.name not in counted:
                    continue
                entry = entry or self._entry(key.name, now)
                entry.failures += 1
                entry.last_seen = now
                entry.precious = entry.precious or precious
                extra = entry.failures - key.free
                if extra >= 0:
                    entry.blocked_until = now + min(self.base_delay * 2**extra, self.max_delay)
            self._bound(now)

    def record_failure(self, key: Key, precious: bool = False) -> None:
        """A failure that was not admitted through `acquire` (a check too cheap to reserve)."""
        self.release([Key(key.name, key.free)], failed=True, precious=precious)

    def _entry(self, name: str, now: float) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            entry = self._entries[name] = _Entry(last_seen=now)
        return entry

    def _bound(self, now: float) -> None:
        if len(self._entries) <= self.max_keys:
            return
        for name, e in list(self._entries.items()):
            if self._stale(e, now):
                del self._entries[name]
        if len(self._entries) <= self.max_keys:
            return
        # Still too many (a spray of names): drop the oldest, entries of unknown names first, so a spray
        # cannot push out the count kept on a real account.
        victims = sorted(
            (e.precious, e.last_seen, name) for name, e in self._entries.items() if not e.in_flight
        )
        target = self.max_keys * 9 // 10  # leave room, so the next failures do not scan again at once
        for _precious, _seen, name in victims[: len(self._entries) - target]:
            del self._entries[name]

    def _stale(self, entry: _Entry, now: float) -> bool:
        return not entry.in_flight and entry.blocked_until <= now and now - entry.last_seen > self.forget_after
