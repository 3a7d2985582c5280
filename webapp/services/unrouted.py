"""Unrouted texts to action: the chat a text belongs to, marking it handled, a new chat with its sender.

A text that matches no active chat (services/inbound.py) is stored with the chat that last joined its sender
and its proxy number (`Message.last_chat_id`, found by two index probes when it arrives), so a party writing
after the end, or to the number of an earlier chat, leads the dispatcher straight to that conversation.
A dispatcher marks it handled (who and when, audited), or starts a new chat with its sender from it; the
nav badge counts the unhandled ones (queries.count_unhandled_unrouted).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from .. import audit, events
from ..database import begin_write
from ..extensions import db
from ..models import Chat, Message, utcnow
from ..proxy import mask, mask_for_log
from ..states import Action, Actor
from .chats import ChatRequest, start_chat, validate_chat_request
from .errors import InvalidInput, NotFound

log = logging.getLogger(__name__)


def last_chat_of(sender: str, proxy: str) -> int | None:
    """The id of the chat (active or ended) that last joined `sender` and `proxy`, or None.

    One probe of ix_chats_a_proxy and one of ix_chats_b_proxy (newest first, one row each): the cost does not
    grow with the chats table, nor with how many chats this person has had.
    """
    found = [
        db.session.scalar(
            select(Chat.id).where(column == sender, Chat.proxy_number == proxy).order_by(Chat.id.desc()).limit(1)
        )
        for column in (Chat.a_number, Chat.b_number)
    ]
    ids = [i for i in found if i is not None]
    return max(ids) if ids else None


def unrouted_text(message_id: int) -> Message:
    """An unrouted text by id (NotFound for any other message)."""
    msg = db.session.get(Message, message_id)
    if msg is None or msg.direction != "in" or msg.chat_id is not None:
        raise NotFound(f"no unrouted text with id {message_id}", field="id")
    return msg


def _describe(msg: Message) -> str:
    """For the audit trail: ids and masked numbers, never the text."""
    return f"unrouted text {msg.id} from {mask(msg.from_number)} to {msg.to_number}"


def _mark(msg: Message, actor: str, note: str | None = None) -> bool:
    """Mark inside the caller's transaction; False when it was handled already (by anyone)."""
    if msg.handled_at is not None:
        return False
    msg.handled_at = utcnow()
    msg.handled_by = actor
    detail = _describe(msg) + (f"; {note}" if note else "")
    audit.record(actor, Action.UNROUTED_HANDLED, msg.last_chat_id, detail)
    return True


def mark_handled(message_id: int, actor: str) -> Message:
    """A dispatcher has dealt with an unrouted text. Marking one that is handled already changes nothing
    (two dispatchers clicking at once: the first one is recorded)."""
    begin_write()
    msg = unrouted_text(message_id)
    changed = _mark(msg, actor)
    db.session.commit()
    if changed:
        log.info("unrouted text %d from %s marked handled", msg.id, mask_for_log(msg.from_number))
        events.announce(events.unrouted_handled, message_id=msg.id)
    return msg


def chat_request_from(message_id: int, form: dict[str, Any]) -> ChatRequest:
    """A pairing request whose person A is the sender of an unrouted text; the rest as the pair form has it.

    The sender's number comes from the stored text, never from the browser, so the dashboard does not need to
    show it (MASK_NUMBERS_IN_UI) to start the chat.
    """
    msg = unrouted_text(message_id)
    fields = {k: form.get(k) for k in ("b", "a_label", "b_label", "reference", "expires_in", "idle_timeout")}
    if not (fields["b"] or "").strip():
        raise InvalidInput("b: choose the other person's number", field="b")
    return validate_chat_request(msg.from_number, **fields)


def start_chat_from(message_id: int, form: dict[str, Any], operator: str, actor: str) -> Chat:
    """Start a chat between the sender of an unrouted text and the person the dispatcher chose, then mark the
    text handled ("started chat 12")."""
    req = chat_request_from(message_id, form)
    chat = start_chat(req, created_by=operator, actor=actor)
    begin_write()
    msg = unrouted_text(message_id)
    changed = _mark(msg, actor or Actor.SYSTEM, f"started chat {chat.id}")
    db.session.commit()
    if changed:
        events.announce(events.unrouted_handled, message_id=msg.id)
    return chat
