"""Housekeeping of the outbox, run as scheduled jobs (jobs.py), each message in its own transaction.

- `recover_interrupted`: a lane whose lease ran out belongs to a worker that died or hung mid-send. Its
  `sending` message may have reached Vonage, so it becomes `unconfirmed` (reconciled like any ambiguous send,
  its window counted from its claim) and the lane is released, so later texts to that person flow again.
- `reconcile_due`: an `unconfirmed` message whose window closed is `submitted` if a receipt carrying its
  client-ref came meanwhile; otherwise it is queued again (at the head of its lane) and marked as resent.

A message that makes either raise is isolated: it is marked `failed` with the reason, and the others go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import current_app
from sqlalchemy import select, update

from .. import events
from ..callbacks import record
from ..database import begin_write
from ..extensions import db
from ..models import Lane, Message, clip, utcnow
from ..states import Status
from .delivery import absorb_receipts, note_attempt, refresh_message_status
from .queue import release_lane, requeue
from .sender import await_receipt, unconfirmed_reason

log = logging.getLogger(__name__)

BATCH = 200


def _isolated(ids: list, step: Callable[[object], tuple[int | None, int, str] | None], what: str) -> int:
    """Run `step` for each id in its own transaction; a failure marks that one message and moves on."""
    done = 0
    for key in ids:
        try:
            changed = step(key)
            db.session.commit()
        except Exception as exc:
            db.session.rollback()
            log.error("%s of %s failed (%s)", what, key, type(exc).__name__)
            changed = _mark_failed(key, f"{what} failed ({type(exc).__name__}): check, then resend")
        if changed is not None:
            chat_id, message_id, status = changed
            events.announce(events.message_status, chat_id=chat_id, message_id=message_id, status=status)
            done += 1
    return done


def _mark_failed(message_id: object, reason: str) -> tuple[int | None, int, str] | None:
    if not isinstance(message_id, int):
        return None
    try:
        begin_write()
        row = db.session.execute(
            update(Message.__table__)
            .where(Message.__table__.c.id == message_id)
            .values(status=Status.FAILED, error=clip(Message.error, reason), next_attempt_at=None,
                    claimed_at=None, updated_at=utcnow())
            .returning(Message.__table__.c.chat_id)
        ).first()
        if row:
            record.message_settled(message_id, Status.FAILED, clip(Message.error, reason))
        db.session.commit()
        return (row.chat_id, message_id, Status.FAILED) if row else None
    except Exception as exc:
        db.session.rollback()
        log.error("could not mark message %s failed (%s)", message_id, type(exc).__name__)
        return None


def recover_interrupted() -> int:
    """Release lanes whose lease ran out; their in-flight messages become unconfirmed. Returns lanes freed."""
    now = utcnow()
    expired = list(
        db.session.scalars(
            select(Lane.recipient).where(Lane.leased_until < now).order_by(Lane.leased_until).limit(BATCH)
        )
    )
    db.session.rollback()
    freed = 0

    for recipient in expired:
        try:
            begin_write()
            lane = db.session.scalar(
                select(Lane).where(Lane.recipient == recipient, Lane.leased_until < utcnow())
                .with_for_update(skip_locked=True)
            )
            if lane is None:  # settled or recovered meanwhile
                db.session.rollback()
                continue
            stuck = list(
                db.session.scalars(
                    select(Message).where(Message.to_number == recipient, Message.status == Status.SENDING)
                )
            )
            for msg in stuck:
                await_receipt(msg, "interrupted while sending (worker stopped)", msg.claimed_at)
            db.session.flush()
            release_lane(db.session.connection(), recipient)
            db.session.commit()
        except Exception as exc:
            db.session.rollback()
            log.error("recovering a lane failed (%s)", type(exc).__name__)
            continue
        freed += 1
        for msg in stuck:
            log.warning("message %d was interrupted mid-send; reconciling", msg.id)
            events.announce(events.message_status, chat_id=msg.chat_id, message_id=msg.id, status=msg.status)
    return freed


def reconcile_due() -> int:
    """Unconfirmed messages whose window closed: submitted if a receipt came, else sent again."""
    window = float(current_app.config["OUTBOX_RECONCILE_SECONDS"])
    ids = list(
        db.session.scalars(
            select(Message.id)
            .where(Message.status == Status.UNCONFIRMED, Message.next_attempt_at <= utcnow())
            .order_by(Message.next_attempt_at)
            .limit(BATCH)
        )
    )
    db.session.rollback()

    def step(message_id: object) -> tuple[int | None, int, str] | None:
        begin_write()
        msg = db.session.scalar(
            select(Message)
            .where(Message.id == message_id, Message.status == Status.UNCONFIRMED,
                   Message.next_attempt_at <= utcnow())
            .with_for_update(skip_locked=True)
        )
        if msg is None:
            return None
        if absorb_receipts(msg):
            msg.next_attempt_at = None
            record.message_settled(msg.id, refresh_message_status(msg, Status.SUBMITTED), msg.error)
        else:
            resent = int((msg.meta or {}).get("auto_resent", 0)) + 1
            note_attempt(msg, Status.UNCONFIRMED, unconfirmed_reason(msg), "resent", at=msg.updated_at)
            requeue(msg, f"no delivery receipt within {window:g} s of an unanswered send: sent again",
                    auto_resent=resent)
            log.info("message %d unconfirmed after %g s: sending again", msg.id, window)
        return msg.chat_id, msg.id, msg.status

    return _isolated(ids, step, "reconciling message")
