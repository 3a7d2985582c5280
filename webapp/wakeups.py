"""Wake-ups: "there is work for you" between threads of one process.

A leaf module: it imports nothing from webapp. The outbox's writer rings `OUTBOX` after a commit that queued
outbound rows; the PostgreSQL doorbell (doorbell.py) rings it when another process did; the worker waits on
it. Other background loops (event deliveries, jobs) get their own bell the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Bell:
    """Wakes the thread that waits on it; a ring while nobody waits is kept for the next wait.

    `channel` is the PostgreSQL NOTIFY channel that carries the same ring to other processes (doorbell.py).
    """

    def __init__(self, name: str, channel: str) -> None:
        self.name = name
        self.channel = channel
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


OUTBOX = Bell("outbox", "smsproxy_outbox")
EVENTS = Bell("events", "smsproxy_events")
BELLS = (OUTBOX, EVENTS)

# Bells to ring once the current transaction commits, kept in the session's `info` dict under this key.
# A writer calls `ring_after_commit(session.info, bell)`; doorbell.py rings them after the commit (and drops
# them on a rollback).
PENDING = "wakeups_pending"


def ring_after_commit(info: dict, bell: Bell) -> bool:
    """Ring `bell` after this transaction commits; True the first time this transaction asks for it."""
    pending = info.setdefault(PENDING, set())
    if bell in pending:
        return False
    pending.add(bell)
    return True


def ring_pending(info: dict) -> None:
    for bell in info.pop(PENDING, ()):
        bell.ring()


def drop_pending(info: dict) -> None:
    info.pop(PENDING, None)
