"""Claiming work: due lanes, not rows, so the cost of a claim does not grow with the backlog.

One short transaction takes up to `limit` due lanes (`due_at <= now`, by index, oldest due first; on
PostgreSQL `FOR UPDATE SKIP LOCKED`, so several workers never take one lane), holds each until
`now + OUTBOX_LEASE_SECONDS`, and moves each lane's head from `queued` to `sending`. Per lane that is one
indexed lookup of the head and one UPDATE, whatever is queued behind it. Nothing is sent inside the
transaction; the HTTP calls happen after it commits (sender.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select, update

from ..database import begin_write
from ..extensions import db
from ..models import Lane, Message, utcnow
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
    """Take up to `limit` due lanes and return the sends to make, oldest due first."""
    begin_write()  # on SQLite: queue with this process's other writers (BEGIN IMMEDIATE)
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
    jobs: list[Job] = []
    for recipient in recipients:
        head = conn.execute(
            select(_messages.c.id, _messages.c.from_number, _messages.c.text, _messages.c.chat_id,
                   _messages.c.next_attempt_at)
            .where(_messages.c.to_number == recipient, _messages.c.status == Status.QUEUED)
            .order_by(_messages.c.id)
            .limit(1)
        ).first()
        if head is not None and (head.next_attempt_at is None or head.next_attempt_at <= now):
            taken = conn.execute(
                update(_messages)
                .where(_messages.c.id == head.id, _messages.c.status == Status.QUEUED)
                .values(status=Status.SENDING, claimed_at=now, updated_at=now)
            ).rowcount
            if taken == 1:
                jobs.append(Job(head.id, recipient, head.from_number, head.text or "", head.chat_id, now))
                continue
        # nothing to send now after all (settled by a receipt meanwhile, or not due yet): back to its due time
        conn.execute(
            update(_lanes)
            .where(_lanes.c.recipient == recipient)
            .values(
                due_at=None if head is None else (head.next_attempt_at or now),
                leased_until=None,
            )
        )
    db.session.commit()
    return jobs


def next_due_in(now: datetime | None = None) -> float | None:
    """Seconds until the earliest lane is due (0 if one is due now), None when no lane is waiting."""
    earliest = db.session.scalar(select(func.min(_lanes.c.due_at)))
    db.session.rollback()
    if earliest is None:
        return None
    return max((earliest - (now or utcnow())).total_seconds(), 0.0)
