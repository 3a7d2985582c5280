"""Claiming work: due lanes, not rows, so the cost of a claim does not grow with the backlog.

One short transaction takes up to `limit` due lanes (`due_at <= now`, by index, oldest due first; on
PostgreSQL `FOR UPDATE SKIP LOCKED`, so several workers never take one lane), holds each until its lease
runs out, and moves the lane's first due messages (up to OUTBOX_LANE_BATCH, oldest first, stopping at the
first one not due yet) from `queued` to `sending`. Per lane that is one indexed lookup and one UPDATE,
whatever is queued behind. Nothing is sent inside the transaction; the HTTP calls happen after it commits,
one message after another within a lane (sender.py), so texts to one person keep their order while a busy
conversation is not held to one database round trip per text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import bindparam, func, select, update

from ..database import begin_write
from ..extensions import db
from ..lanes import take_due
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
    attempts: int = 0  # sends tried before this claim

    @property
    def client_ref(self) -> str:
        return client_ref(self.message_id)


@dataclass
class Batch:
    """The messages a worker took from one lane, oldest first, and the lease it holds the lane by.

    `lease_until` is also the lane's token: it moves forward when the worker renews the lease (`renew`).
    """

    recipient: str
    jobs: tuple[Job, ...]
    lease_until: datetime


def lease_seconds() -> float:
    """How long a worker may hold a lane: OUTBOX_LEASE_SECONDS, but always longer than one send can take."""
    cfg = current_app.config
    return max(float(cfg["OUTBOX_LEASE_SECONDS"]), float(cfg["VONAGE_TIMEOUT"]) + 2.0)


def claim(limit: int) -> list[Batch]:
    """Take up to `limit` due lanes and return what to send from each, oldest due lane first."""
    per_lane = max(int(current_app.config["OUTBOX_LANE_BATCH"]), 1)
    begin_write()  # on SQLite: queue with this process's other writers (BEGIN IMMEDIATE)
    conn = db.session.connection()
    now = utcnow()
    lease_until = now + timedelta(seconds=lease_seconds())
    recipients = take_due(conn, _lanes, _lanes.c.recipient, now, lease_until, limit)
    batches: list[Batch] = []
    for recipient in recipients:
        heads = conn.execute(_HEADS, {"recipient": recipient, "per_lane": per_lane}).all()
        due_heads = []
        for head in heads:
            if head.next_attempt_at is not None and head.next_attempt_at > now:
                break  # a retry waiting for its backoff: it and everything behind it wait
            due_heads.append(head)
        ids = [h.id for h in due_heads]
        taken = set()
        if ids:
            taken = set(conn.execute(_TAKE, {"ids": ids, "now": now}).scalars())
        jobs = []
        for head in due_heads:
            if head.id not in taken:
                break  # settled by a receipt meanwhile: keep the order, send what came before only
            jobs.append(Job(head.id, recipient, head.from_number, head.text or "", head.chat_id, now,
                            head.attempts or 0))
        if jobs:
            if len(jobs) < len(taken):  # give back what was taken behind a gap
                conn.execute(
                    update(_messages)
                    .where(_messages.c.id.in_(taken - {j.message_id for j in jobs}))
                    .values(status=Status.QUEUED, claimed_at=None)
                )
            batches.append(Batch(recipient, tuple(jobs), lease_until))
            continue
        # nothing to send now after all (not due yet, or settled meanwhile): back to its due time
        conn.execute(_PUT_BACK, {"recipient": recipient,
                                 "due": None if not heads else (heads[0].next_attempt_at or now)})
    db.session.commit()
    return batches


def renew(batches: list[Batch]) -> None:
    """Extend the leases of lanes still being sent, so a slow but living worker keeps them.

    Only a lease still held by that token is extended; recovery (or a settle) may have ended it meanwhile.
    """
    if not batches:
        return
    begin_write()
    conn = db.session.connection()
    until = utcnow() + timedelta(seconds=lease_seconds())
    renewed = []
    for batch in batches:
        moved = conn.execute(
            update(_lanes)
            .where(_lanes.c.recipient == batch.recipient, _lanes.c.leased_until == batch.lease_until)
            .values(leased_until=until)
        ).rowcount
        if moved:
            renewed.append(batch)
    db.session.commit()
    for batch in renewed:
        batch.lease_until = until


# Built once: building a statement (and its cache key) costs more CPU than running it.
_HEADS = (
    select(_messages.c.id, _messages.c.from_number, _messages.c.text, _messages.c.chat_id,
           _messages.c.next_attempt_at, _messages.c.attempts)
    .where(_messages.c.to_number == bindparam("recipient"), _messages.c.status == Status.QUEUED)
    .order_by(_messages.c.id)
    .limit(bindparam("per_lane"))
)
_TAKE = (
    update(_messages)
    .where(_messages.c.id.in_(bindparam("ids", expanding=True)), _messages.c.status == Status.QUEUED)
    .values(status=Status.SENDING, claimed_at=bindparam("now"), updated_at=bindparam("now"))
    .returning(_messages.c.id)
)
_PUT_BACK = (
    update(_lanes)
    .where(_lanes.c.recipient == bindparam("recipient"))
    .values(due_at=bindparam("due", type_=UTCDateTime()), leased_until=None)
)


def next_due_in(now: datetime | None = None) -> float | None:
    """Seconds until the earliest lane is due (0 if one is due now), None when no lane is waiting."""
    earliest = db.session.scalar(select(func.min(_lanes.c.due_at)))
    db.session.rollback()
    if earliest is None:
        return None
    return max((earliest - (now or utcnow())).total_seconds(), 0.0)
