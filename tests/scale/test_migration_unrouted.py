"""The migration of issue 11's unrouted handling fills in what is already stored: each unrouted text's chat
link, and texts older than a day marked handled by "system" (the badge counted the last 24 hours before)."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, text

from webapp.database import alembic_config

BEFORE = "b7c2e4f81a90"  # the head before the unrouted handling
PROXY, A, B, STRANGER = "+447700900001", "+447700900111", "+447700900222", "+447700900999"


def test_upgrade_links_stored_unrouted_texts_and_marks_old_ones_handled(database_url):
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), BEFORE)
        pg = engine.dialect.name == "postgresql"
        ago = (lambda d: f"now() - interval '{d} days'") if pg else (lambda d: f"datetime('now', '-{d} days')")
        with engine.begin() as conn:
            for chat_id, days in ((1, 5), (2, 3)):
                conn.execute(text(
                    "INSERT INTO chats (id, a_number, b_number, proxy_number, status, created_at, last_activity_at,"
                    f" unread) VALUES ({chat_id}, :a, :b, :p, 'ended', {ago(days)}, {ago(days)}, 0)"
                ), {"a": A, "b": B, "p": PROXY})
            for message_id, sender, days in ((1, A, 4), (2, B, 0), (3, STRANGER, 0)):
                conn.execute(text(
                    "INSERT INTO messages (id, direction, kind, from_number, to_number, text, status, attempts,"
                    f" created_at, updated_at) VALUES ({message_id}, 'in', 'sms', :s, :p, 'hi', 'unrouted', 0,"
                    f" {ago(days)}, {ago(days)})"
                ), {"s": sender, "p": PROXY})
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
        with engine.connect() as conn:
            rows = {r.id: r for r in conn.execute(text(
                "SELECT id, last_chat_id, handled_at, handled_by FROM messages ORDER BY id"))}
        # A wrote 4 days ago: chat 1 (5 days) was theirs then, chat 2 (3 days) did not exist yet
        assert rows[1].last_chat_id == 1
        assert rows[2].last_chat_id == 2  # B, today: the last chat of B on that number
        assert rows[3].last_chat_id is None  # a stranger
        assert rows[1].handled_by == "system" and rows[1].handled_at is not None  # older than a day
        assert rows[2].handled_at is None and rows[3].handled_at is None  # still for a dispatcher
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), BEFORE)
    finally:
        engine.dispose()
