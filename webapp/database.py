"""Engine setup per backend, schema migrations at start, and the write-transaction helper services use.

One code path serves both backends, chosen by DATABASE_URL:
- SQLite (the default): WAL, `synchronous=NORMAL`, a busy timeout, and `BEGIN IMMEDIATE` for read-then-write
  transactions (docs/database.md).
- PostgreSQL (`postgresql+psycopg://...`, psycopg 3): a pool that discards its connections when one turns out
  dead, so a restarted server is reconnected to by itself; unique constraints settle races and
  `FOR UPDATE SKIP LOCKED` keeps outbox claims apart.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, SessionTransaction

from . import fulltext
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


# SQLite has one writer at a time. Writers queue here instead of in SQLite's busy handler, which sleeps in
# growing steps (1, 2, 5 ... up to 100 ms) between tries: under concurrent webhooks that sleeping, not the work,
# set the throughput and the tail latency (BENCHMARKS.md). The threads of a process queue on a Python lock; the
# processes of one database (the web and outbox processes of `python -m webapp`, `flask` commands) on an advisory
# file lock beside it (`<database>-writer`, flock). Both hand over the moment the holder lets go, and the kernel
# drops the file lock of a process that dies, so a `kill -9` never leaves the database locked. Anything else
# writing to the file (the sqlite3 shell) still meets SQLite's busy timeout.
WRITE_WAIT_SECONDS = 15.0
_HELD = "sqlite_writer_held"


class SqliteWriter:
    """The write lock of one SQLite database file, for this process (see above)."""

    def __init__(self, path: str | None) -> None:
        self.path = path  # None: an in-memory database, private to this process
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def _file(self) -> int:
        if self._pid != os.getpid():  # first use in this process (a forked child opens its own)
            self._fd = os.open(f"{self.path}-writer", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        assert self._fd is not None
        return self._fd

    def acquire(self, timeout: float = WRITE_WAIT_SECONDS) -> bool:
        """Become this database's writer; False when this process's queue did not move within `timeout`.

        Only the head of this process's queue waits for the file lock, in the kernel and without a timeout: a
        process holding it either finishes its transaction or dies (and loses it), and if it hangs, this
        process's other writers time out on the Python lock and answer 503, as SQLite's own timeout would.
        """
        if not self._lock.acquire(timeout=timeout):
            return False
        if self.path is None:
            return True
        try:
            fcntl.flock(self._file(), fcntl.LOCK_EX)
        except BaseException:
            self._lock.release()
            raise
        return True

    def release(self) -> None:
        if self.path is not None:
            fcntl.flock(self._file(), fcntl.LOCK_UN)
        self._lock.release()

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()  # a lock held by a thread that did not survive the fork would stay held


_writers: dict[str | None, SqliteWriter] = {}
_writers_lock = threading.Lock()


def sqlite_writer(engine: Engine) -> SqliteWriter:
    """The write lock of the SQLite database behind `engine`."""
    database = engine.url.database
    path = None if database in (None, "", ":memory:") else os.path.realpath(database)
    writer = _writers.get(path)
    if writer is None:
        with _writers_lock:
            writer = _writers.setdefault(path, SqliteWriter(path))
    return writer


def _reset_writers_after_fork() -> None:
    global _writers_lock
    _writers_lock = threading.Lock()
    for writer in _writers.values():
        writer.reset_after_fork()


os.register_at_fork(after_in_child=_reset_writers_after_fork)


def begin_write() -> None:
    """Start the session's transaction as a writer.

    On SQLite a read-then-write transaction must take the write lock up front (`BEGIN IMMEDIATE`), or two
    of them deadlock and one fails at once with "database is locked" (docs/database.md); before that it
    queues for the database's writer lock (above). PostgreSQL needs nothing: the unique constraints catch
    races and the caller retries.
    """
    session = db.session
    conn = session.connection()
    if conn.dialect.name != "sqlite" or conn.connection.dbapi_connection.in_transaction:
        return
    if not session.info.get(_HELD):
        writer = sqlite_writer(conn.engine)
        if not writer.acquire():
            raise DatabaseBusy("the database is busy; try again")
        session.info[_HELD] = writer
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _release_writer(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        writer = session.info.pop(_HELD, None)
        if writer is not None:
            writer.release()


def install_write_gate() -> None:
    """Release the SQLite writer lock whenever a session's transaction ends (commit, rollback, close)."""
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
            done = _migrate(conn, command)
            # the search index, rebuilt if something dropped part of it (fulltext.py)
            if fulltext.ensure(conn):
                conn.commit()
            return done
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

        with fulltext.quiet_reflection():
            differences = compare_metadata(
                MigrationContext.configure(conn, opts={"include_name": fulltext.include_name}), db.metadata
            )
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
