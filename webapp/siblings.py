"""The two channels between the web process and the outbox process that `python -m webapp` runs (server.py).

Both are made by the supervising process before it starts either child, and inherited by each child it forks,
so a child that is restarted finds them as they were, and no path or port is involved:

- the **bell** (an eventfd): the web process rings it after a commit that queued outbound texts (through
  `wakeups.OUTBOX.also`), and the outbox process, blocked reading it, rings its own worker at once instead of
  waiting for its next poll. Rings while nobody reads add up in the counter: one read wakes the worker once.
- the **event pipe** (a datagram socketpair): what the outbox process announces (a message's new state; see
  `events.redirect`) and the health of its jobs travel as small JSON datagrams to the web process, which
  announces them to its own listeners, so dashboards hear them live.

Both are best effort, like live events themselves: the database is the truth. A full pipe drops a datagram (a
dashboard re-fetches what it shows when it reconnects); a lost bell costs one OUTBOX_POLL_SECONDS.
Imports only leaf modules (events, wakeups).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from . import events, wakeups

log = logging.getLogger(__name__)

MAX_DATAGRAM = 60_000


class Siblings:
    """The bell and the event pipe; made once, before forking, and used from either child."""

    def __init__(self) -> None:
        self.bell = os.eventfd(0, os.EFD_CLOEXEC)
        self._outbox_end, self._web_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._outbox_end.setblocking(False)
        self.jobs: dict[str, Any] = {}  # in the web process: the outbox process's jobs, as last reported
        self.dropped = 0  # in the outbox process: events the web process could not take (logged once a run)

    # -- in the web process ---------------------------------------------------------------------------

    def ring_outbox(self) -> None:
        with contextlib.suppress(OSError):
            os.eventfd_write(self.bell, 1)

    def serve_web(self, announce: Callable[[str, dict[str, Any]], None]) -> threading.Thread:
        """Ring the outbox process's bell whenever this process's outbox bell rings, and announce here what
        the outbox process announces (`announce(signal name, data)`), from a daemon thread."""
        wakeups.OUTBOX.also(self.ring_outbox)
        thread = threading.Thread(target=self._receive, args=(announce,), name="outbox-events", daemon=True)
        thread.start()
        return thread

    def _receive(self, announce: Callable[[str, dict[str, Any]], None]) -> None:
        while True:
            try:
                raw = self._web_end.recv(MAX_DATAGRAM)
                kind, name, data = json.loads(raw)
            except OSError:
                return
            except ValueError:
                log.warning("outbox events: a datagram that is not an event was dropped")
                continue
            if kind == "jobs":
                self.jobs = data
                continue
            try:
                announce(name, data)
            except Exception:  # one bad event never stops the others
                log.exception("outbox event %s could not be announced", name)

    # -- in the outbox process ------------------------------------------------------------------------

    def serve_outbox(self) -> threading.Thread:
        """Send this process's announcements to the web process, and ring this process's outbox bell when the
        web process rings (from a daemon thread)."""
        events.redirect(self.send_event)
        thread = threading.Thread(target=self._listen_bell, name="outbox-bell", daemon=True)
        thread.start()
        return thread

    def _listen_bell(self) -> None:
        while True:
            try:
                os.eventfd_read(self.bell)
            except OSError:
                return
            wakeups.OUTBOX.ring()

    def send_event(self, name: str, data: dict[str, Any]) -> None:
        self._send(["event", name, data])

    def send_jobs(self, status: dict[str, Any]) -> None:
        self._send(["jobs", "", status])

    def _send(self, message: list[Any]) -> None:
        raw = json.dumps(message, separators=(",", ":"), default=str).encode()
        try:
            self._outbox_end.send(raw)
        except OSError as exc:  # full (the web process is not reading, e.g. restarting), or gone
            if not self.dropped:
                log.warning("outbox events: %s; events are dropped until the web process reads again",
                            type(exc).__name__)
            self.dropped += 1
            return
        if self.dropped:
            log.warning("outbox events: %d event(s) were dropped; dashboards catch up when they reconnect",
                        self.dropped)
            self.dropped = 0
