"""Wake-ups for the outbox after a commit: this process's worker at once, other processes through PostgreSQL.

The outbox's writer (outbox/queue.py) calls `queued(session)` in every transaction that queues outbound rows.
After that transaction commits, this process's worker is woken (`wakeups.OUTBOX`). On PostgreSQL the same
transaction also runs `pg_notify('smsproxy_outbox', '')`, which PostgreSQL delivers at commit (never for a
rollback, and once per transaction however many rows) to every process whose `Listener` is LISTENing; the
listener then rings its own process's bell. On SQLite nothing is sent: one process runs both, and a separate
worker simply polls (OUTBOX_POLL_SECONDS).

The event callbacks' writer (callbacks/record.py) does the same for the event sender through
`wakeups.ring_after_commit` and its own channel (`wakeups.EVENTS.channel`), unless the transaction notifies the
outbox's channel already (a relay): that one wakes event senders too. The listener here hears both.
"""

from __future__ import annotations

import logging
import threading

from flask import Flask
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from . import wakeups
from .extensions import db

log = logging.getLogger(__name__)

CHANNEL = wakeups.OUTBOX.channel
# What a notification on each channel wakes. The outbox's also wakes the event sender: a transaction that queues
# an SMS usually records an event too (a relay and its message.received), and then sends only this one NOTIFY.
_BY_CHANNEL = {CHANNEL: (wakeups.OUTBOX, wakeups.EVENTS), wakeups.EVENTS.channel: (wakeups.EVENTS,)}
_NOTIFY = text("SELECT pg_notify(:c, '')")


def queued(session: Session) -> None:
    """This transaction queued outbound rows: wake the outbox when it commits (once per transaction)."""
    if not wakeups.ring_after_commit(session.info, wakeups.OUTBOX):
        return
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.execute(_NOTIFY, {"c": CHANNEL})


def _after_commit(session: Session) -> None:
    wakeups.ring_pending(session.info)  # the bells writers asked for: the outbox's, the event sender's


def _after_rollback(session: Session) -> None:
    wakeups.drop_pending(session.info)


def install() -> None:
    """Ring this process's outbox bell after every commit that queued outbound rows."""
    if not event.contains(Session, "after_commit", _after_commit):
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_rollback", _after_rollback)


class Listener:
    """A thread that LISTENs on the doorbell channels and wakes this process's outbox worker (and event sender)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.listening = threading.Event()

    def start(self) -> bool:
        with self.app.app_context():
            if db.engine.dialect.name != "postgresql":
                return False
        self.thread = threading.Thread(target=self.run, name="outbox-doorbell", daemon=True)
        self.thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()
        if self.thread:
            self.thread.join(timeout=5)

    def run(self) -> None:
        import psycopg

        with self.app.app_context():
            url = db.engine.url.set(drivername="postgresql")
            dsn = url.render_as_string(hide_password=False)
        delay = 1.0
        while not self._stop.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
                    for channel in _BY_CHANNEL:
                        conn.execute(f"LISTEN {channel}")
                    self.listening.set()
                    delay = 1.0
                    for bell in wakeups.BELLS:  # rows may have been queued while we were not listening
                        bell.ring()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0, stop_after=1):
                            for bell in _BY_CHANNEL.get(note.channel, wakeups.BELLS):
                                bell.ring()
            except Exception as exc:
                self.listening.clear()
                log.warning("outbox doorbell: %s; reconnecting in %.0f s", type(exc).__name__, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
