"""The only writer of event callbacks (docs/events.md): `record(type, chat_id, data)` and the event builders.

Called inside the transaction of what caused the event, so the event is stored exactly when its cause is
(a rollback takes both away). It is the LAST write of that transaction: every transaction takes the outbox's
lanes before the event lanes, so two of them never wait on each other in a circle. With EVENTS_URL unset it
returns at once: the relay hot path pays one dict lookup.

Each event goes into its chat's lane (`callback_lanes`), made due if it was idle; the sender (sender.py)
delivers a lane's events in id order. Texts of one chat are recorded one after another (the relay path locks
the chat), so their events are in the order the texts came. Recording never waits for the event sender: on
PostgreSQL it is one statement that skips a lane the sender holds (`_pg_record_statement`). After the commit
the event sender of this process is woken; on PostgreSQL a NOTIFY wakes the senders of other processes
(doorbell.py).

Imports only models, states, extensions and the leaf `wakeups`, so any service or the outbox may call it.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from .. import lanes, wakeups
from ..extensions import db
from ..models import CallbackEvent, CallbackLane, Chat, Message, UTCDateTime, utcnow
from ..states import FINAL_FAILURES, CallbackStatus, ChatStatus, EventType, Status

_events = CallbackEvent.__table__
_lanes = CallbackLane.__table__
_chats = Chat.__table__
_messages = Message.__table__
_INSERT = _events.insert()
_NOTIFY = text("SELECT pg_notify(:c, '')")
_PG_RECORD: list[Any] = []  # PostgreSQL's one-statement record, built on first use
_MESSAGE_CHAT = (
    select(
        _chats.c.id, _chats.c.reference, _chats.c.proxy_number, _chats.c.a_number, _chats.c.b_number,
        _chats.c.a_label, _chats.c.b_label, _messages.c.kind, _messages.c.side, _messages.c.to_number,
        _messages.c.source_id,
    )
    .join(_chats, _chats.c.id == _messages.c.chat_id)
    .where(_messages.c.id == bindparam("message_id"))
)


def enabled() -> bool:
    """Events are recorded only when there is somewhere to send them."""
    return bool(current_app.config.get("EVENTS_URL"))


def lane_key(chat_id: int | None) -> str:
    return "none" if chat_id is None else f"chat:{chat_id}"


def new_public_id() -> str:
    """The event's `id` as the receiver sees it, the same on every delivery attempt."""
    return "evt_" + secrets.token_hex(12)


def open_statement(dialect: str) -> Any:
    """INSERT the chat's event lane due now, or make it due now if idle (lanes.open_statement)."""
    return lanes.open_statement(_lanes, "key", dialect)


def _pg_record_statement() -> Any:
    """PostgreSQL, one round trip that never waits for the event sender:

    - make the chat's lane due if it is idle (an UPDATE whose condition is read from the committed row: a
      lane the sender has claimed or is settling is due or leased there, so it is skipped, not waited for);
    - open the lane if there is none (INSERT ... ON CONFLICT DO NOTHING, which takes no lock on a lane that
      exists);
    - insert the event.
    The one case this leaves open, a sender releasing the lane at the moment this commits, is closed by the
    sender's `reopen_stranded()` within seconds (worker.py).
    """
    if not _PG_RECORD:
        now = bindparam("now", type_=UTCDateTime)
        touched = (
            update(_lanes)
            .where(_lanes.c.key == bindparam("lane"), _lanes.c.due_at.is_(None), _lanes.c.leased_until.is_(None))
            .values(due_at=now)
            .returning(_lanes.c.id)
            .cte("touched")
        )
        opened = (
            pg_insert(_lanes).values(key=bindparam("lane"), due_at=now)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(_lanes.c.id)
            .cte("opened")
        )
        c = _events.c
        _PG_RECORD.append(_events.insert().values({
            c.public_id: bindparam("public_id", type_=c.public_id.type),
            c.type: bindparam("type", type_=c.type.type),
            c.chat_id: bindparam("chat_id", type_=c.chat_id.type),
            c.lane: bindparam("lane", type_=c.lane.type),
            c.data: bindparam("data", type_=c.data.type),
            c.status: bindparam("status", type_=c.status.type),
            c.attempts: 0, c.next_attempt_at: now, c.created_at: now,
        }).add_cte(touched, opened))
    return _PG_RECORD[0]


def record(type: EventType | str, chat_id: int | None, data: dict[str, Any]) -> str | None:
    """Store one event in the caller's transaction; its public id, or None when events are off.

    `data` must be JSON-ready (ISO strings for times); `chat_id` is put first in it.
    """
    if not enabled():
        return None
    session = db.session
    conn = session.connection()
    now = utcnow()
    key = lane_key(chat_id)
    public_id = new_public_id()
    params = {"public_id": public_id, "type": str(type), "chat_id": chat_id, "lane": key,
              "data": {"chat_id": chat_id, **data}, "status": CallbackStatus.PENDING}
    if conn.dialect.name == "postgresql":
        conn.execute(_pg_record_statement(), {**params, "now": now})
    else:
        conn.execute(open_statement(conn.dialect.name), {"key": key, "due_at": now})
        conn.execute(_INSERT, {**params, "attempts": 0, "next_attempt_at": now, "created_at": now})
    # other processes' senders: this transaction's outbox NOTIFY (a relay's) wakes them too (doorbell.py)
    outbox_notified = wakeups.OUTBOX in session.info.get(wakeups.PENDING, ())
    if wakeups.ring_after_commit(session.info, wakeups.EVENTS) and conn.dialect.name == "postgresql" \
            and not outbox_notified:
        conn.execute(_NOTIFY, {"c": wakeups.EVENTS.channel})
    return public_id


# ------------------------------------------------------------------ what each event carries


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def chat_fields(chat: Any) -> dict[str, Any]:
    """What every event of a chat carries. `chat`: a Chat, or a row with the same attribute names."""
    return {
        "chat_id": chat.id,
        "reference": chat.reference,
        "proxy_number": chat.proxy_number,
        "a": chat.a_number,
        "b": chat.b_number,
        "a_label": chat.a_label,
        "b_label": chat.b_label,
    }


def _label(chat: Any, side: str | None) -> str | None:
    return chat.a_label if side == "a" else chat.b_label if side == "b" else None


def chat_created(chat: Chat) -> None:
    if enabled():
        record(EventType.CHAT_CREATED, chat.id, {
            **chat_fields(chat), "status": chat.status or ChatStatus.ACTIVE, "reason": None,
            "created_at": _iso(chat.created_at),
        })


def chat_ended(chat: Chat) -> None:
    """`reason` is the chat's ended_reason: operator, api, opt_out, expired, idle..."""
    if enabled():
        record(EventType.CHAT_ENDED, chat.id, {
            **chat_fields(chat), "status": ChatStatus.ENDED, "reason": chat.ended_reason,
            "ended_at": _iso(chat.ended_at),
        })


def participant_opted_out(chat: Chat, side: str, message_id: int | None) -> None:
    if enabled():
        record(EventType.PARTICIPANT_OPTED_OUT, chat.id, {
            **chat_fields(chat), "message_id": message_id, "side": side, "number": chat.number(side),
            "label": _label(chat, side), "status": Status.OPT_OUT, "reason": "opt_out",
            "at": _iso(utcnow()),
        })


def message_received(chat: Any, message_id: int, side: str, text: str, created_at: datetime | None) -> None:
    """A party's text was stored. `chat`: a Chat or a row (id, reference, proxy_number, a/b numbers, labels)."""
    if enabled():
        record(EventType.MESSAGE_RECEIVED, chat.id, {
            **chat_fields(chat), "message_id": message_id, "direction": "inbound", "side": side,
            "from": chat.a_number if side == "a" else chat.b_number, "to": chat.proxy_number,
            "label": _label(chat, side), "text": text, "status": Status.RECEIVED, "reason": None,
            "created_at": _iso(created_at),
        })


def message_settled(message_id: int, status: str, reason: str | None = None) -> None:
    """An outbound message reached a final state: `message.delivered`, or `message.failed` (failed, expired,
    rejected). Other states record nothing, and neither do messages outside a chat (auto-replies)."""
    if not enabled():
        return
    if status == Status.DELIVERED:
        kind = EventType.MESSAGE_DELIVERED
    elif status in FINAL_FAILURES:
        kind = EventType.MESSAGE_FAILED
    else:
        return
    row = db.session.connection().execute(_MESSAGE_CHAT, {"message_id": message_id}).first()
    if row is None:
        return
    record(kind, row.id, {
        **chat_fields(row), "message_id": message_id, "direction": "outbound", "kind": row.kind,
        "side": row.side, "to": row.to_number, "label": _label(row, row.side),
        "source_message_id": row.source_id, "status": str(status),
        "reason": None if status == Status.DELIVERED else reason, "at": _iso(utcnow()),
    })
