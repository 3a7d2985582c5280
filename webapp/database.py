"""Engine setup per backend, and the write-transaction helper services use."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from .extensions import db


def engine_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 15, "check_same_thread": False}}
    return {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20}


def install_sqlite_pragmas(engine: Engine) -> None:
    """WAL, NORMAL sync, a busy timeout and foreign keys on every SQLite connection (shared/stack.md §5.1)."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        if engine.url.database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=15000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()


def begin_write() -> None:
    """Start the session's transaction as a writer.

    On SQLite a read-then-write transaction must take the write lock up front (`BEGIN IMMEDIATE`), or two
    of them deadlock and one fails at once with "database is locked" (shared/stack.md §5.2). PostgreSQL
    needs nothing: the unique constraints catch races and the caller retries.
    """
    session = db.session
    if session.get_bind().dialect.name != "sqlite":
        return
    raw = session.connection().connection.dbapi_connection
    if not raw.in_transaction:
        session.execute(text("BEGIN IMMEDIATE"))
