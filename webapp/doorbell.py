"""Cross-process outbox doorbell on PostgreSQL: LISTEN/NOTIFY.

In one process, services call `outbox.wake()` after a commit. Outbox workers in *other* processes
(`flask outbox work`, or a second web process) would only notice the new row at their next poll. On
PostgreSQL a transaction that queues an outbound message also runs `pg_notify('smsproxy_outbox', '')`;
PostgreSQL delivers it at commit (never for a rollback, and once per transaction however many rows) to every
process whose `Listener` is LISTENing, which then calls `outbox.wake()`. On SQLite nothing is sent: one
process runs both, and a separate worker simply polls (OUTBOX_POLL_SECONDS).

Self-contained: `install()` hooks SQLAlchemy's `after_flush`, so no service needs to change.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from flask import Flask
from sqlalchemy import Connection, event, text
from sqlalchemy.orm import Session

from .extensions import db

log = logging.getLogger(__name__)

CHANNEL = "smsproxy_outbox"
_NOTIFY = text("SELECT pg_notify(:c, '')")
_installed = False


def _queues_outbound(session: Session) -> bool:
    from .models import Message

    return any(
        isinstance(obj, Message) and obj.direction == "out" and obj.status == "queued" for obj in session.new
    )


def ring(connection: Connection) -> None:
    """Ring from a transaction that queued outbound rows with Core statements (no ORM flush to hook)."""
    if connection.dialect.name == "postgresql":
        connection.execute(_NOTIFY, {"c": CHANNEL})


def _after_flush(session: Session, _flush_context: Any) -> None:
    if session.info.get("doorbell_rung") or not _queues_outbound(session):
        return
    ring(session.connection())
    session.info["doorbell_rung"] = True


def _forget(session: Session, *_args: Any) -> None:
    session.info.pop("doorbell_rung", None)


def install() -> None:
    """Ring the doorbell from every transaction that queues an outbound message (PostgreSQL only)."""
    global _installed
    if _installed:
        return
    session_class = db.session.session_factory.class_
    event.listen(session_class, "after_flush", _after_flush)
    event.listen(session_class, "after_commit", _forget)
    event.listen(session_class, "after_rollback", _forget)
    _installed = True


class Listener:
    """A thread that LISTENs on the doorbell channel and wakes this process's outbox worker."""

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

        from . import outbox

        with self.app.app_context():
            url = db.engine.url.set(drivername="postgresql")
            dsn = url.render_as_string(hide_password=False)
        delay = 1.0
        while not self._stop.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    delay = 1.0
                    outbox.wake()  # rows may have been queued while we were not listening
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            outbox.wake()
            except Exception as exc:
                self.listening.clear()
                log.warning("outbox doorbell: %s; reconnecting in %.0f s", type(exc).__name__, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
