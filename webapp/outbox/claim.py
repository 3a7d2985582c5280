"""Claiming work: due lanes, not rows, so the cost of a claim does not grow with the backlog.

One short transaction takes up to `limit` due lanes (`due_at <= now`, by index, oldest due first; on
PostgreSQL `FOR UPDATE SKIP LOCKED`, so several workers never take one lane), holds each until
`now + OUTBOX_LEASE_SECONDS`, and moves each lane's head from `queued` to `sending`: three statements for the
whole batch, with one indexed lookup of each lane's head, whatever is queued behind it. Nothing is sent inside
the transaction; the HTTP calls happen after it commits (sender.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, func, select, update

from ..database import begin_write
from ..extensions import db
from ..models import Lane, Message, UTCDateTime, utcnow
from ..states import Status
from .delivery import client_ref

_messages = Message.__table__
_lanes = Lane.__table__


@dataclass(frozen=True)
class Job:
    """One send a worker is about to make: everything it needs, so no ORM object crosses threads."""

    message_id: int
    to: str
    sender: str
    text: str
    chat_id: int | None
    claimed_at: datetime

    @property
    def client_ref(self) -> str:
        return client_ref(self.message_id)


def lease_seconds() -> float:
    """How long a worker may hold a lane: OUTBOX_LEASE_SECONDS, but always longer than one send can take."""
    cfg = current_app.config
    return max(float(cfg["OUTBOX_LEASE_SECONDS"]), float(cfg["VONAGE_TIMEOUT"]) + 2.0)


def claim(limit: int) -> list[Job]:
    """Take up to `limit` due lanes and return the sends to make, oldest due first.

    Three statements whatever the number of lanes: the lanes (UPDATE ... RETURNING), their heads (one indexed
    `ORDER BY id LIMIT 1` per lane, as correlated subqueries of one SELECT), and the heads moved to `sending`
    (UPDATE ... WHERE status = 'queued' RETURNING). A lane whose head is gone or not due yet is put back.
    """
    begin_write()  # on SQLite: queue with this database's other writers (BEGIN IMMEDIATE)
    conn = db.session.connection()
    now = utcnow()
    due = (
        select(_lanes.c.id)
        .where(_lanes.c.due_at <= now)
        .order_by(_lanes.c.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    recipients = conn.execute(
        update(_lanes)
        .where(_lanes.c.id.in_(due), _lanes.c.due_at <= now)
        .values(due_at=None, leased_until=now + timedelta(seconds=lease_seconds()))
        .returning(_lanes.c.recipient)
    ).scalars().all()
    if not recipients:
        db.session.commit()
        return []
    heads = {
        row.to_number: row
        for row in conn.execute(_HEADS, {"recipients": recipients})
    }
    ready = [heads[r] for r in recipients if r in heads and (heads[r].next_attempt_at or now) <= now]
    taken: set[int] = set()
    if ready:
        taken = set(conn.execute(_TAKE, {"ids": [h.id for h in ready], "now": now}).scalars())
    jobs = [Job(h.id, h.to_number, h.from_number, h.text or "", h.chat_id, now) for h in ready if h.id in taken]
    back = [r for r in recipients if r not in heads or heads[r].id not in taken]
    if back:  # nothing to send now after all (settled by a receipt meanwhile, or not due yet)
        conn.execute(_PUT_BACK, [
            {"r": r, "due": None if r not in heads else (heads[r].next_attempt_at or now)} for r in back
        ])
    db.session.commit()
    return jobs


def _heads_statement() -> Any:
    """Each named lane's head: its oldest queued message (one index probe per lane, not a scan)."""
    head_id = (
        select(_messages.c.id)
        .where(_messages.c.to_number == _lanes.c.recipient, _messages.c.status == Status.QUEUED)
        .order_by(_messages.c.id)
        .limit(1)
        .correlate(_lanes)
        .scalar_subquery()
    )
    ids = select(head_id).where(_lanes.c.recipient.in_(bindparam("recipients", expanding=True)))
    return select(
        _messages.c.id, _messages.c.to_number, _messages.c.from_number, _messages.c.text, _messages.c.chat_id,
        _messages.c.next_attempt_at,
    ).where(_messages.c.id.in_(ids))


_HEADS = _heads_statement()
_TAKE = (
    update(_messages)
    .where(_messages.c.id.in_(bindparam("ids", expanding=True)), _messages.c.status == Status.QUEUED)
    .values(status=Status.SENDING, claimed_at=bindparam("now"), updated_at=bindparam("now"))
    .returning(_messages.c.id)
)
_PUT_BACK = (
    update(_lanes)
    .where(_lanes.c.recipient == bindparam("r"))
    .values(due_at=bindparam("due", type_=UTCDateTime()), leased_until=None)
)


def next_due_in(now: datetime | None = None) -> float | None:
    """Seconds until the earliest lane is due (0 if one is due now), None when no lane is waiting."""
    earliest = db.session.scalar(select(func.min(_lanes.c.due_at)))
    db.session.rollback()
    if earliest is None:
        return None
    return max((earliest - (now or utcnow())).total_seconds(), 0.0)
