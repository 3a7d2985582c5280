"""Wake-ups for the outbox after a commit: this process's worker at once, other processes through PostgreSQL.

The outbox's writer (outbox/queue.py) calls `queued(session)` in every transaction that queues outbound rows.
After that transaction commits, this process's worker is woken (`wakeups.OUTBOX`). On PostgreSQL the same
transaction also runs `pg_notify('smsproxy_outbox', '')`, which PostgreSQL delivers at commit (never for a
rollback, and once per transaction however many rows) to every process whose `Listener` is LISTENing; the
listener then rings its own process's bell. On SQLite nothing is sent: one process runs both, and a separate
worker simply polls (OUTBOX_POLL_SECONDS).

The event callbacks' writer (callbacks/record.py) does the same for the event sender through
`wakeups.ring_after_commit` and its own channel (`wakeups.EVENTS.channel`); the listener here hears both.
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
_BY_CHANNEL = {bell.channel: bell for bell in wakeups.BELLS}
_NOTIFY = text("SELECT pg_notify(:c, '')")
_FLAG = "outbox_queued"


def queued(session: Session) -> None:
    """This transaction queued outbound rows: wake the outbox when it commits (once per transaction)."""
    if session.info.get(_FLAG):
        return
    session.info[_FLAG] = True
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.execute(_NOTIFY, {"c": CHANNEL})


def _after_commit(session: Session) -> None:
    if session.info.pop(_FLAG, False):
        wakeups.OUTBOX.ring()
    wakeups.ring_pending(session.info)  # other bells writers asked for (the event sender's)


def _after_rollback(session: Session) -> None:
    session.info.pop(_FLAG, None)
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
                            _BY_CHANNEL.get(note.channel, wakeups.OUTBOX).ring()
            except Exception as exc:
                self.listening.clear()
                log.warning("outbox doorbell: %s; reconnecting in %.0f s", type(exc).__name__, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
