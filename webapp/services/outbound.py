"""Outbound use cases for the operator: resend a message that failed."""

from __future__ import annotations

import logging

from sqlalchemy import select

from .. import events
from ..database import begin_write
from ..extensions import db
from ..models import Chat, Message
from ..outbox import queue_message
from ..proxy import mask_for_log
from ..states import RESENDABLE, Direction, EndedReason, Status
from .errors import Conflict, NotFound

log = logging.getLogger(__name__)


def _opted_out_side(chat: Chat) -> str | None:
    if chat.ended_reason != EndedReason.OPT_OUT:
        return None
    return db.session.scalar(
        select(Message.side)
        .where(Message.chat_id == chat.id, Message.direction == Direction.IN, Message.status == Status.OPT_OUT)
        .order_by(Message.id.desc())
        .limit(1)
    )


def resend_message(message_id: int, requested_by: str | None = None) -> Message:
    """Queue a fresh copy of an outbound message that failed (or stayed unconfirmed); return the copy.

    The original keeps its state and reason and records `meta.resent_as`; the copy has its own id, so its own
    client-ref and receipts. Refused (Conflict) for a message still on its way, already delivered or
    submitted, or addressed to someone who opted out (STOP). Resending an `unconfirmed` message is the
    operator's call: it may already have reached the phone.
    """
    begin_write()
    msg = db.session.get(Message, message_id)
    if msg is None or msg.direction != Direction.OUT:
        raise NotFound(f"no outbound message with id {message_id}", field="id")
    if msg.status not in RESENDABLE:
        raise Conflict(
            f"message {message_id} is {msg.status}; only failed messages can be resent", field="id"
        )
    if (msg.meta or {}).get("resent_as"):
        raise Conflict(f"message {message_id} was already resent as {msg.meta['resent_as']}", field="id")
    if msg.chat_id is not None:
        chat = db.session.get(Chat, msg.chat_id)
        if chat is not None and msg.side and _opted_out_side(chat) == msg.side:
            raise Conflict("the recipient opted out (STOP); nothing may be sent to them", field="id")
    copy = queue_message(
        to=msg.to_number,
        sender=msg.from_number,
        text=msg.text,
        kind=msg.kind,
        chat_id=msg.chat_id,
        side=msg.side,
        source_id=msg.source_id,
        meta={"resend_of": msg.id, "requested_by": requested_by},
    )
    db.session.flush()
    msg.meta = {**(msg.meta or {}), "resent_as": copy.id}
    db.session.commit()
    log.info("message %d resent as %d to %s", msg.id, copy.id, mask_for_log(copy.to_number))
    events.announce(events.message_added, chat_id=copy.chat_id, message_id=copy.id)
    events.announce(events.message_status, chat_id=msg.chat_id, message_id=msg.id, status=msg.status)
    return copy
