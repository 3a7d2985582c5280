"""Wake-ups: "there is work for you" between threads of one process.

A leaf module: it imports nothing from webapp. The outbox's writer rings `OUTBOX` after a commit that queued
outbound rows; the PostgreSQL doorbell (doorbell.py) rings it when another process did; the worker waits on
it. Other background loops (event deliveries, jobs) get their own bell the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Bell:
    """Wakes the thread that waits on it; a ring while nobody waits is kept for the next wait."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._event = threading.Event()
        self._also: Callable[[], None] | None = None

    def ring(self) -> None:
        self._event.set()
        if self._also is not None:
            self._also()

    def also(self, ring: Callable[[], None] | None) -> None:
        """Call `ring` on every ring too (it wakes a waiter in another process: server.py); None to stop."""
        self._also = ring

    def wait(self, timeout: float | None) -> bool:
        """Block until rung or `timeout` passes; True when rung. The ring is consumed."""
        rung = self._event.wait(timeout)
        self._event.clear()
        return rung


OUTBOX = Bell("outbox")
EVENTS = Bell("events")
