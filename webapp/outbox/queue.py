"""The only writer of outbound rows and of lanes: everything that puts a text on its way out comes here.

An outbound message is a row in `messages` (direction `out`, status `queued`) plus its recipient's lane
(`lanes`, models.Lane) made due. Keeping both writes in one module keeps the lane invariant in one place:

    a lane that is not held by a worker is due (`due_at` set) exactly when it has a queued message, at that
    message's `next_attempt_at`; the message it sends next is its oldest queued one (its head).

Workers hold a lane while its head is being sent (claim.py) and release it when the send is settled
(`release_lane`), which makes it due again at its next head. So texts to one person go out one at a time, in
order, while texts to everyone else flow in parallel, and finding work never scans the queue.

Callers own the transaction (on SQLite they have called `database.begin_write()`); after their commit this
process's worker is woken, and on PostgreSQL the doorbell wakes workers in other processes (doorbell.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update

from .. import doorbell
from ..extensions import db
from ..lanes import open_statement
from ..models import Lane, Message, UTCDateTime, clip, utcnow
from ..states import Direction, Kind, Status

_messages = Message.__table__
_lanes = Lane.__table__


def open_lane(conn: Connection, recipient: str, due: datetime) -> None:
    """The recipient's lane has a queued message due at `due`: make it due unless it is busy already."""
    conn.execute(open_statement(_lanes, "recipient", conn.dialect.name), {"recipient": recipient, "due_at": due})


def queue_message(
    *,
    to: str,
    sender: str,
    text: str,
    kind: Kind | str,
    chat_id: int | None = None,
    side: str | None = None,
    source_id: int | None = None,
    meta: dict[str, Any] | None = None,
) -> Message:
    """Queue one SMS from `sender` (one of our proxy numbers) to `to`, in the caller's transaction."""
    now = utcnow()
    msg = Message(
        direction=Direction.OUT,
        kind=kind,
        side=side,
        chat_id=chat_id,
        from_number=sender,
        to_number=to,
        text=text,
        status=Status.QUEUED,
        source_id=source_id,
        next_attempt_at=now,
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    if meta is not None:  # left unset otherwise: SQL NULL, not a JSON null
        msg.meta = meta
    db.session.add(msg)
    conn = db.session.connection()
    open_lane(conn, to, now)
    doorbell.queued(db.session)
    return msg


def queue_rows(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """The hot path's version of `queue_message` for many texts at once (services/relay.py): one INSERT for
    the rows, one lane statement per recipient.

    `rows` hold every column of a message except direction and status. They are inserted in the order given,
    so ids, and with them each recipient's order, follow it.
    """
    full = [{**row, "direction": Direction.OUT, "status": Status.QUEUED} for row in rows]
    if len({frozenset(row) for row in full}) == 1:
        conn.execute(_messages.insert(), full)
    else:  # some rows carry columns others leave unset (meta): one by one, in order
        for row in full:
            conn.execute(_messages.insert(), row)
    due: dict[str, datetime] = {}
    for row in rows:
        due.setdefault(row["to_number"], row["next_attempt_at"])
    conn.execute(
        open_statement(_lanes, "recipient", conn.dialect.name),
        [{"recipient": r, "due_at": d} for r, d in sorted(due.items())],
    )
    doorbell.queued(db.session)


def requeue(msg: Message, error: str | None, **meta: Any) -> None:
    """Put a message that left the queue (unconfirmed) back on it, due now, recording why in `error`."""
    now = utcnow()
    msg.status = Status.QUEUED
    msg.next_attempt_at = now
    msg.claimed_at = None
    msg.error = clip(Message.error, error)
    if meta:
        msg.meta = {**(msg.meta or {}), **meta}
    open_lane(db.session.connection(), msg.to_number, now)
    doorbell.queued(db.session)


def lock_lane(conn: Connection, recipient: str) -> None:
    """Hold the recipient's lane row for this transaction (PostgreSQL; SQLite's writer lock already does).

    Taken first by every transaction that settles or recovers a send, so an enqueue racing it is seen by the
    `release_lane` that follows, and locks are always taken lane first, then message (no deadlock).
    """
    if conn.dialect.name == "postgresql":
        conn.execute(select(_lanes.c.id).where(_lanes.c.recipient == recipient).with_for_update())


def _head_due() -> Any:
    """When the lane named by :r is next due: its oldest queued message's time (NULL when nothing is queued)."""
    return (
        select(func.coalesce(_messages.c.next_attempt_at, bindparam("now", type_=UTCDateTime())))
        .where(_messages.c.to_number == bindparam("r"), _messages.c.status == Status.QUEUED)
        .order_by(_messages.c.id)
        .limit(1)
        .scalar_subquery()
    )


# Built once (building a statement and its cache key costs more CPU than running it).
_RELEASE = update(_lanes).where(_lanes.c.recipient == bindparam("r")).values(due_at=_head_due(), leased_until=None)
_RELEASE_HELD = (
    update(_lanes)
    .where(_lanes.c.recipient == bindparam("r"), _lanes.c.leased_until == bindparam("lease", type_=UTCDateTime()))
    .values(due_at=_head_due(), leased_until=None)
)


def release_lane(conn: Connection, recipient: str, lease: datetime | None = None) -> None:
    """A worker is done with the lane: it is due at its next head's time, or idle when nothing is queued.

    `lease`: release only if the lane is still held by that lease (recovery may have taken it back and
    another worker may hold it now). Callers take `lock_lane` first (PostgreSQL), so this statement sees
    every message queued before.
    """
    params = {"r": recipient, "now": utcnow()}
    if lease is None:
        conn.execute(_RELEASE, params)
    else:
        conn.execute(_RELEASE_HELD, {**params, "lease": lease})
