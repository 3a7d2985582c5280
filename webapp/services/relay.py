"""The webhook's hot path: a text from a party of an active chat, stored with its relay in four statements.

Most inbound webhooks are exactly this case, and the ORM unit of work cost ~4x the CPU of the rows it wrote
(bench/ingest_profile.py). So the common case runs prebuilt Core statements: one routing SELECT that locks the
chat row (PostgreSQL; SQLite's BEGIN IMMEDIATE holds the write lock already), the inbound INSERT deduplicated
by `ON CONFLICT (provider_id) DO NOTHING RETURNING id`, the relay INSERT with its lane (outbox/queue.py) and the chat's
activity UPDATE, all in the caller's transaction. Everything else (strangers, opt-out, empty texts, multipart
sets) goes through the general path in inbound.py. The relay is queued through the outbox's writer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..callbacks import record
from ..extensions import db
from ..models import Chat, Message, Route, utcnow
from ..outbox import queue_row
from ..proxy import is_opt_out
from ..states import Direction, Kind, Status


@dataclass(frozen=True)
class Statements:
    route: Any
    inbound: Any
    touch: Any


_BUILT: dict[str, Statements] = {}


def _statements(dialect: str) -> Statements:
    if dialect not in _BUILT:
        m, c, r = Message.__table__, Chat.__table__, Route.__table__
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        _BUILT[dialect] = Statements(
            route=select(c.c.id, c.c.a_number, c.c.b_number, c.c.a_label, c.c.b_label, c.c.reference,
                         c.c.proxy_number)
            .join(r, r.c.chat_id == c.c.id)
            .where(r.c.real_number == bindparam("sender"), r.c.proxy_number == bindparam("proxy"))
            # FOR NO KEY UPDATE: texts of one chat take turns, but a foreign-key check on the chat (FOR KEY
            # SHARE, e.g. by an outbox settle that holds a recipient's lane) never waits for us, which would
            # deadlock with our own wait for that lane
            .with_for_update(of=c, key_share=True),
            inbound=insert(m).on_conflict_do_nothing(index_elements=["provider_id"]).returning(m.c.id),
            touch=update(c)
            .where(c.c.id == bindparam("cid"))
            .values(last_activity_at=bindparam("now"), unread=c.c.unread + 1),
        )
    return _BUILT[dialect]


@dataclass(frozen=True)
class FastResult:
    """`message_id` None means the messageId was already stored: a duplicate."""

    message_id: int | None
    chat_id: int


def try_relay(sender: str, proxy: str, text: str, provider_id: str | None) -> FastResult | None:
    """Store a routed text and queue its relay; None when the text needs the general path."""
    if not text.strip() or is_opt_out(text):
        return None
    conn: Connection = db.session.connection()
    st = _statements(conn.dialect.name)
    row = conn.execute(st.route, {"sender": sender, "proxy": proxy}).first()
    if row is None:
        return None
    side, other, recipient = ("a", "b", row.b_number) if row.a_number == sender else ("b", "a", row.a_number)
    now = utcnow()
    common = {"text": text, "attempts": 0, "chat_id": row.id, "created_at": now, "updated_at": now}
    message_id = conn.execute(
        st.inbound,
        {
            **common,
            "direction": Direction.IN,
            "kind": Kind.SMS,
            "side": side,
            "from_number": sender,
            "to_number": proxy,
            "status": Status.RECEIVED,
            "provider_id": provider_id,
        },
    ).scalar()
    if message_id is None:
        return FastResult(None, row.id)
    queue_row(
        conn,
        {
            **common,
            "kind": Kind.RELAY,
            "side": other,
            "from_number": proxy,
            "to_number": recipient,
            "source_id": message_id,
            "next_attempt_at": now,
        },
    )
    conn.execute(st.touch, {"cid": row.id, "now": now})
    record.message_received(row, message_id, side, text, now)  # nothing unless EVENTS_URL is set
    return FastResult(message_id, row.id)
