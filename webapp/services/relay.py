"""The webhook's hot path: a text from a party of an active chat, stored with its relay in four statements.

Most inbound webhooks are exactly this case, and the ORM unit of work cost ~4x the CPU of the rows it wrote
(bench/ingest_profile.py). So the common case runs prebuilt Core statements: one routing SELECT that locks the
chat row (PostgreSQL; SQLite's BEGIN IMMEDIATE holds the write lock already), the inbound INSERT deduplicated
by `ON CONFLICT (provider_id) DO NOTHING RETURNING id`, the relay INSERT with its lane (outbox/queue.py) and the chat's
activity UPDATE (which also moves the chat's idle deadline), all in the caller's transaction. Everything else
(strangers, STOP/START, empty texts, multipart sets) goes through the general path in inbound.py. The relay is
queued through the outbox's writer.

With REDACT_CONTACTS on, the relay carries the text with phone numbers and e-mail addresses replaced, the
inbound row keeps the original, and both record what was removed in `meta.redacted`; with it off (the
default) the path does no more work than before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..extensions import db
from ..models import Chat, Message, Route, utcnow
from ..outbox import queue_row
from ..proxy import Redaction, is_keyword, redact_contacts, region_of
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
            route=select(c.c.id, c.c.a_number, c.c.b_number, c.c.idle_timeout)
            .join(r, r.c.chat_id == c.c.id)
            .where(r.c.real_number == bindparam("sender"), r.c.proxy_number == bindparam("proxy"))
            # NO KEY UPDATE: serialises the texts of one chat, yet lets other transactions insert or
            # update rows that merely reference the chat (their foreign-key check takes KEY SHARE), so a
            # settle holding a lane never waits on a webhook holding the chat (docs/database.md)
            .with_for_update(of=c, key_share=True),
            inbound=insert(m).on_conflict_do_nothing(index_elements=["provider_id"]).returning(m.c.id),
            touch=update(c)
            .where(c.c.id == bindparam("cid"))
            .values(last_activity_at=bindparam("now"), unread=c.c.unread + 1, idle_at=bindparam("idle_at")),
        )
    return _BUILT[dialect]


@dataclass(frozen=True)
class FastResult:
    """`message_id` None means the messageId was already stored: a duplicate."""

    message_id: int | None
    chat_id: int


def redaction(text: str, sender: str, default_region: str) -> Redaction | None:
    """The text with contact details removed, or None when it has none (REDACT_CONTACTS)."""
    found = redact_contacts(text, region_of(sender) or default_region)
    return found if found.changed else None


def try_relay(
    sender: str, proxy: str, text: str, provider_id: str | None, redact: bool = False, region: str = "GB"
) -> FastResult | None:
    """Store a routed text and queue its relay; None when the text needs the general path."""
    if not text.strip() or is_keyword(text):
        return None
    conn: Connection = db.session.connection()
    st = _statements(conn.dialect.name)
    row = conn.execute(st.route, {"sender": sender, "proxy": proxy}).first()
    if row is None:
        return None
    side, other, recipient = ("a", "b", row.b_number) if row.a_number == sender else ("b", "a", row.a_number)
    now = utcnow()
    common = {"text": text, "attempts": 0, "chat_id": row.id, "created_at": now, "updated_at": now}
    relayed = redaction(text, sender, region) if redact else None
    marker = {"meta": {"redacted": list(relayed.found)}} if relayed is not None else {}
    message_id = conn.execute(
        st.inbound,
        {
            **common,
            **marker,
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
            **marker,
            **({"text": relayed.text} if relayed is not None else {}),
        },
    )
    idle_at = now + timedelta(seconds=row.idle_timeout) if row.idle_timeout else None
    conn.execute(st.touch, {"cid": row.id, "now": now, "idle_at": idle_at})
    return FastResult(message_id, row.id)
