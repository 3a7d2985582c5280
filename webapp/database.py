"""Engine setup per backend, schema migrations at start, and the write-transaction helper services use.

One code path serves both backends, chosen by DATABASE_URL:
- SQLite (the default): WAL, `synchronous=NORMAL`, a busy timeout, and `BEGIN IMMEDIATE` for read-then-write
  transactions (docs/database.md).
- PostgreSQL (`postgresql+psycopg://...`, psycopg 3): a pool that discards its connections when one turns out
  dead, so a restarted server is reconnected to by itself; unique constraints settle races and
  `FOR UPDATE SKIP LOCKED` keeps outbox claims apart.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, SessionTransaction

from .extensions import db

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# pg_advisory_lock key held while one process creates or upgrades the schema ("smsproxy" as an int).
SCHEMA_LOCK = 0x736D7370


def normalise_url(url: str) -> str:
    """postgres:// and postgresql:// (Heroku style) mean psycopg 3; everything else is kept as given."""
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def engine_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 15, "check_same_thread": False}}
    return {
        # No pre-ping: it costs a round trip on every request (~0.5 ms CPU, bench/ingest_profile.py). After a
        # server restart the first statement on a dead connection fails (the webhook answers 503, Vonage
        # retries), SQLAlchemy sees a disconnect, discards the whole pool, and the next request reconnects.
        "pool_pre_ping": False,
        "pool_size": 10,
        "max_overflow": 40,  # gunicorn --threads 100: most threads hold sockets, not connections
        "pool_timeout": 10,
        "pool_recycle": 1800,
        "connect_args": {"connect_timeout": 5},
    }


def install_sqlite_pragmas(engine: Engine) -> None:
    """WAL, NORMAL sync, a busy timeout and foreign keys on every SQLite connection (docs/database.md)."""
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


class DatabaseBusy(RuntimeError):
    """The write lock could not be had in time; the caller answers 503 (Vonage retries webhooks)."""


# SQLite has one writer at a time. Writers of this process queue here, in Python, rather than in SQLite's busy
# handler, which sleeps in growing steps (up to 100 ms) between tries: under 32 concurrent webhooks that sleeping,
# not the work, set the throughput and the tail latency (BENCHMARKS.md). Other processes still meet the busy
# timeout as before.
_sqlite_writer = threading.Lock()
_HELD = "sqlite_writer_held"
WRITE_WAIT_SECONDS = 15.0


def begin_write() -> None:
    """Start the session's transaction as a writer.

    On SQLite a read-then-write transaction must take the write lock up front (`BEGIN IMMEDIATE`), or two
    of them deadlock and one fails at once with "database is locked" (docs/database.md). PostgreSQL
    needs nothing: the unique constraints catch races and the caller retries.
    """
    session = db.session
    conn = session.connection()
    if conn.dialect.name != "sqlite" or conn.connection.dbapi_connection.in_transaction:
        return
    if not session.info.get(_HELD):
        if not _sqlite_writer.acquire(timeout=WRITE_WAIT_SECONDS):
            raise DatabaseBusy("the database is busy; try again")
        session.info[_HELD] = True
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _release_writer(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None and session.info.pop(_HELD, False):
        _sqlite_writer.release()


def install_write_gate() -> None:
    """Release the in-process SQLite writer lock whenever a session's transaction ends (commit, rollback, close)."""
    if not event.contains(Session, "after_transaction_end", _release_writer):
        event.listen(Session, "after_transaction_end", _release_writer)


# --- schema -------------------------------------------------------------------------------------------------


def alembic_config(connection: Connection | None = None) -> Any:
    """An Alembic Config for migrations/, optionally bound to an open connection (see migrations/env.py)."""
    from alembic.config import Config

    cfg = Config(str(MIGRATIONS / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    from alembic.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def migrate_schema(engine: Engine) -> str:
    """Bring the schema to the newest migration; returns what was done ("created", "upgraded", "current").

    - empty database: `create_all` then stamp head. The migration test proves that the migrations build
      exactly this schema, and it is one quick step (the first start on SQLite needs nothing else);
    - database at an older revision: `alembic upgrade head`;
    - tables but no revision (made by create_all before migrations existed): stamped at head when they
      match the models ("adopted"), else at the first revision and upgraded.
    On PostgreSQL an advisory lock makes processes that start together take turns.
    """
    from alembic import command

    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": SCHEMA_LOCK})
            conn.commit()
        try:
            return _migrate(conn, command)
        finally:
            if conn.dialect.name == "postgresql":
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": SCHEMA_LOCK})
                conn.commit()


def _migrate(conn: Connection, command: Any) -> str:
    cfg = alembic_config(conn)
    head = head_revision()
    revision = current_revision(conn)
    if revision == head:
        conn.commit()
        return "current"
    tables = set(inspect(conn).get_table_names()) - {"alembic_version"}
    if revision is None and not tables:
        db.metadata.create_all(conn)
        command.stamp(cfg, "head")
        conn.commit()
        log.info("database schema created at revision %s", head)
        return "created"
    if revision is None:
        # Made by create_all before migrations existed: already current (stamp head), or as old as the
        # first revision, from which the migrations bring it up.
        from alembic.autogenerate import compare_metadata
        from alembic.migration import MigrationContext
        from alembic.script import ScriptDirectory

        differences = compare_metadata(MigrationContext.configure(conn), db.metadata)
        taken_as = head if not differences else ScriptDirectory.from_config(cfg).get_base()
        command.stamp(cfg, taken_as)
        log.warning("database without a schema revision: taken as %s", taken_as)
        if taken_as == head:
            conn.commit()
            return "adopted"
    command.upgrade(cfg, "head")
    conn.commit()
    log.info("database schema upgraded to revision %s", head)
    return "upgraded"
