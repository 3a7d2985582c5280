"""Outbound use cases for the operator: a dispatcher's own message to a party, and resending one that failed."""

from __future__ import annotations

import logging

from sqlalchemy import select

from .. import audit, events
from ..database import begin_write
from ..extensions import db
from ..models import Chat, Message, utcnow
from ..outbox import queue_message
from ..proxy import mask_for_log, segments
from ..states import RESENDABLE, Action, ChatStatus, Direction, EndedReason, Kind, Recipient, Status
from .chats import queue_to_party
from .errors import Conflict, InvalidInput, NotFound
from .optouts import opted_out

log = logging.getLogger(__name__)

MAX_OPERATOR_TEXT = 1_600  # ten SMS parts of plain text; Vonage itself accepts at most 3,200 characters


def validate_operator_message(to: object, text: object) -> tuple[list[str], str]:
    """(sides, text) of a dispatcher's message, or InvalidInput naming the bad field."""
    if not isinstance(to, str) or to.strip().lower() not in set(Recipient):
        raise InvalidInput('to must be "a", "b" or "both"', field="to")
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("text is required: write the message to send", field="text")
    text = text.strip()
    if len(text) > MAX_OPERATOR_TEXT:
        raise InvalidInput(f"text is longer than {MAX_OPERATOR_TEXT:,} characters", field="text")
    choice = to.strip().lower()
    return (["a", "b"] if choice == Recipient.BOTH else [choice]), text


def send_operator_message(chat_id: int, to: object, text: object, actor: str) -> list[Message]:
    """Queue a dispatcher's (or the firm's backend's) own SMS to one or both parties, from the proxy number.

    Each message has kind `operator` and records who sent it (`meta.sent_by`). Refused with Conflict when the
    chat has ended or the recipient opted out; InvalidInput for an empty text or a bad `to`.
    """
    sides, body = validate_operator_message(to, text)
    begin_write()
    chat = db.session.get(Chat, chat_id, with_for_update={"key_share": True}, populate_existing=True)
    if chat is None:
        raise NotFound(f"no chat with id {chat_id}", field="id")
    if chat.status != ChatStatus.ACTIVE:
        raise Conflict(f"chat {chat_id} has ended; nothing more can be sent in it", field="id")
    blocked = opted_out(chat.number(side) for side in sides)
    for side in sides:
        if chat.number(side) in blocked:
            raise Conflict(f"{side}: this person opted out (STOP); nothing may be sent to them", field="to")
    sent = [
        queue_to_party(chat, side, Kind.OPERATOR, body, meta={"sent_by": actor}) for side in sides
    ]
    chat.last_activity_at = utcnow()  # keeps the chat at the top of the list; the idle deadline is the parties'
    db.session.flush()
    audit.record(
        actor,
        Action.MESSAGE_SENT,
        chat.id,
        f"to {'both' if len(sides) == 2 else sides[0]}: message {', '.join(str(m.id) for m in sent)}"
        f" ({len(body)} characters, {segments(body)} SMS part(s) each)",
    )
    db.session.commit()
    log.info("operator message(s) %s queued in chat %d", [m.id for m in sent], chat.id)
    for m in sent:
        events.announce(events.message_added, chat_id=chat.id, message_id=m.id)
    return sent


def _opted_out_side(chat: Chat) -> str | None:
    if chat.ended_reason != EndedReason.OPT_OUT:
        return None
    return db.session.scalar(
        select(Message.side)
        .where(Message.chat_id == chat.id, Message.direction == Direction.IN, Message.status == Status.OPT_OUT)
        .order_by(Message.id.desc())
        .limit(1)
    )


def resend_message(message_id: int, requested_by: str | None = None, actor: str | None = None) -> Message:
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
        meta={
            "resend_of": msg.id,
            "requested_by": requested_by,
            **{k: v for k, v in (msg.meta or {}).items() if k in ("sent_by", "redacted")},
        },
    )
    db.session.flush()
    msg.meta = {**(msg.meta or {}), "resent_as": copy.id}
    audit.record(
        actor or requested_by, Action.MESSAGE_RESENT, msg.chat_id, f"message {msg.id} resent as {copy.id}"
    )
    db.session.commit()
    log.info("message %d resent as %d to %s", msg.id, copy.id, mask_for_log(copy.to_number))
    events.announce(events.message_added, chat_id=copy.chat_id, message_id=copy.id)
    events.announce(events.message_status, chat_id=msg.chat_id, message_id=msg.id, status=msg.status)
    return copy
