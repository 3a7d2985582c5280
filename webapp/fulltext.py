"""The search index of chats and message texts: what it is on each backend, how it is built and checked.

Search (webapp/search.py) never scans `chats` or `messages` with LIKE. It asks an index:

- SQLite: two FTS5 tables, kept in step by triggers on the tables they index (so every writer, the services,
  the outbox, retention and a `sqlite3` shell alike, keeps them right, and a message costs one index insert):
  `search_chat_words` (labels and reference) and `search_messages` (the texts people and dispatchers wrote).
  Both are external-content tables: they hold the index, not a copy of the text. Numbers ("ends with these
  digits") use b-tree expression indexes on each number's last three digits (`substr(a_number, -3)`), which
  narrow 100,000 chats to a few hundred before `LIKE '%<digits>'` checks them.
- PostgreSQL: expression indexes that PostgreSQL maintains itself: a GIN full-text index (`to_tsvector`,
  `simple` configuration) over the labels and reference, one over the texts people and dispatchers wrote
  (partial: relays, introductions and notices repeat or template text and are left out), and b-tree indexes
  on the reversed numbers (`reverse(a_number) text_pattern_ops`) for "ends with these digits".

The objects are not SQLAlchemy models: the migration creates them (migrations/versions/*_search_index.py,
the same statements, frozen), `create_all` creates them through `install()`, and Alembic's comparison leaves
them out through `include_name()`. `ensure()` runs at every start and rebuilds them if something dropped
them (on SQLite a migration that recreates `chats` or `messages` in batch mode drops their triggers).

This module imports nothing from webapp: models.py calls `install(db.metadata)`.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from typing import Any

from sqlalchemy import MetaData, event, text
from sqlalchemy.engine import Connection

log = logging.getLogger(__name__)

PREFIX = "search_"

# The messages whose text is searched: what a person or a dispatcher wrote, in a chat.
MESSAGE_ROWS = "chat_id IS NOT NULL AND (direction = 'in' OR kind = 'operator')"


def _rows(alias: str) -> str:
    return MESSAGE_ROWS.replace("chat_id", f"{alias}.chat_id").replace("direction", f"{alias}.direction").replace(
        "kind", f"{alias}.kind"
    )


# --- SQLite: FTS5 tables and the triggers that keep them -----------------------------------------------------

_WORDS_COLS = ("a_label", "b_label", "reference")
NUMBER_COLUMNS = ("a_number", "b_number", "proxy_number")


def _fts_insert(table: str, cols: tuple[str, ...], ref: str) -> str:
    return f"INSERT INTO {table}(rowid, {', '.join(cols)}) VALUES ({ref}.id, {', '.join(f'{ref}.{c}' for c in cols)});"


def _fts_delete(table: str, cols: tuple[str, ...], ref: str) -> str:
    values = ", ".join(f"{ref}.{c}" for c in cols)
    return f"INSERT INTO {table}({table}, rowid, {', '.join(cols)}) VALUES ('delete', {ref}.id, {values});"


SQLITE_TABLES = {
    "search_chat_words": "CREATE VIRTUAL TABLE search_chat_words USING fts5("
    "a_label, b_label, reference, content='chats', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 2')",
    "search_messages": "CREATE VIRTUAL TABLE search_messages USING fts5("
    "text, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
}

SQLITE_TRIGGERS = {
    "search_chats_insert": "CREATE TRIGGER search_chats_insert AFTER INSERT ON chats BEGIN "
    + _fts_insert("search_chat_words", _WORDS_COLS, "new")
    + " END",
    "search_chats_delete": "CREATE TRIGGER search_chats_delete AFTER DELETE ON chats BEGIN "
    + _fts_delete("search_chat_words", _WORDS_COLS, "old")
    + " END",
    "search_chats_update": "CREATE TRIGGER search_chats_update AFTER UPDATE OF "
    + ", ".join(_WORDS_COLS)
    + " ON chats BEGIN "
    + _fts_delete("search_chat_words", _WORDS_COLS, "old")
    + " "
    + _fts_insert("search_chat_words", _WORDS_COLS, "new")
    + " END",
    "search_messages_insert": f"CREATE TRIGGER search_messages_insert AFTER INSERT ON messages WHEN {_rows('new')} "
    "BEGIN INSERT INTO search_messages(rowid, text) VALUES (new.id, new.text); END",
    "search_messages_delete": f"CREATE TRIGGER search_messages_delete AFTER DELETE ON messages WHEN {_rows('old')} "
    "BEGIN INSERT INTO search_messages(search_messages, rowid, text) VALUES ('delete', old.id, old.text); END",
    # one trigger, two statements in order: take the old text out (if it was in), put the new one in (if it
    # belongs): the order of two separate triggers on one event is not defined
    "search_messages_update": "CREATE TRIGGER search_messages_update AFTER UPDATE OF text, chat_id, direction, kind "
    f"ON messages WHEN ({_rows('old')}) OR ({_rows('new')}) BEGIN "
    "INSERT INTO search_messages(search_messages, rowid, text) "
    f"SELECT 'delete', old.id, old.text WHERE {_rows('old')}; "
    f"INSERT INTO search_messages(rowid, text) SELECT new.id, new.text WHERE {_rows('new')}; END",
}

SQLITE_INDEXES = {
    f"search_chats_{column}": f"CREATE INDEX search_chats_{column} ON chats (substr({column}, -3))"
    for column in NUMBER_COLUMNS
}

SQLITE_FILL = (
    "INSERT INTO search_chat_words(search_chat_words) VALUES ('rebuild')",
    f"INSERT INTO search_messages(rowid, text) SELECT id, text FROM messages WHERE {MESSAGE_ROWS}",
)

# --- PostgreSQL: expression indexes ------------------------------------------------------------------------

# The expressions search.py queries with; an index is used only when the query repeats its expression exactly.
PG_CHAT_WORDS = (
    "to_tsvector('simple'::regconfig, regexp_replace("
    "coalesce(a_label, '') || ' ' || coalesce(b_label, '') || ' ' || coalesce(reference, ''), "
    "'[^[:alnum:]]+', ' ', 'g'))"
)
PG_MESSAGE_WORDS = "to_tsvector('simple'::regconfig, regexp_replace(text, '[^[:alnum:]]+', ' ', 'g'))"

PG_INDEXES = {
    "search_chats_words": f"CREATE INDEX search_chats_words ON chats USING gin ({PG_CHAT_WORDS})",
    "search_chats_a_number": "CREATE INDEX search_chats_a_number ON chats (reverse(a_number) text_pattern_ops)",
    "search_chats_b_number": "CREATE INDEX search_chats_b_number ON chats (reverse(b_number) text_pattern_ops)",
    "search_chats_proxy_number": "CREATE INDEX search_chats_proxy_number ON chats "
    "(reverse(proxy_number) text_pattern_ops)",
    "search_messages_text": f"CREATE INDEX search_messages_text ON messages USING gin ({PG_MESSAGE_WORDS}) "
    f"WHERE {MESSAGE_ROWS}",
}


# --- building, checking -------------------------------------------------------------------------------------


def expected(dialect: str) -> set[str]:
    """Names of the search objects a database of this dialect must have."""
    if dialect == "sqlite":
        return set(SQLITE_TABLES) | set(SQLITE_TRIGGERS) | set(SQLITE_INDEXES)
    if dialect == "postgresql":
        return set(PG_INDEXES)
    return set()


def present(conn: Connection) -> set[str]:
    if conn.dialect.name == "sqlite":
        rows = conn.execute(
            text(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger', 'index') "
                "AND name LIKE 'search\\_%' ESCAPE '\\'"
            )
        )
    elif conn.dialect.name == "postgresql":
        rows = conn.execute(
            text(
                "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
                "AND tablename IN ('chats', 'messages') AND indexname LIKE 'search\\_%'"
            )
        )
    else:
        return set()
    return set(rows.scalars())


def create(conn: Connection) -> None:
    """Create the search objects and index what is already stored. The database must have none of them."""
    if conn.dialect.name == "sqlite":
        for statement in (*SQLITE_TABLES.values(), *SQLITE_TRIGGERS.values(), *SQLITE_INDEXES.values(), *SQLITE_FILL):
            conn.exec_driver_sql(statement)
    elif conn.dialect.name == "postgresql":
        for statement in PG_INDEXES.values():
            conn.exec_driver_sql(statement)


def drop(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        for name in SQLITE_TRIGGERS:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
        for name in SQLITE_INDEXES:
            conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
        for name in SQLITE_TABLES:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    elif conn.dialect.name == "postgresql":
        for name in PG_INDEXES:
            conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")


def ensure(conn: Connection) -> bool:
    """Rebuild the search objects if any is missing (returns True if it did). Cheap when all are there."""
    want = expected(conn.dialect.name)
    have = present(conn) & want
    missing = want - have
    if not missing:
        return False
    if have:
        log.warning("search index incomplete (missing %s): rebuilding it", ", ".join(sorted(missing)))
    else:
        log.info("creating the search index")
    drop(conn)
    create(conn)
    return True


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic's `include_name`: leave the search objects (and FTS5's shadow tables) out of comparisons."""
    return not (type_ in ("table", "index") and name is not None and name.startswith(PREFIX))


@contextlib.contextmanager
def quiet_reflection() -> Iterator[None]:
    """SQLAlchemy cannot reflect SQLite's expression indexes and warns about each; ours are left out anyway."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipped unsupported reflection of expression-based index search_")
        yield


def install(metadata: MetaData) -> None:
    """Have `metadata.create_all()` build the search objects too, and `drop_all()` remove them."""

    @event.listens_for(metadata, "after_create")
    def _after_create(target: MetaData, connection: Connection, **kw: Any) -> None:
        ensure(connection)

    @event.listens_for(metadata, "before_drop")
    def _before_drop(target: MetaData, connection: Connection, **kw: Any) -> None:
        drop(connection)
