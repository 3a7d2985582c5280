"""Chats: pairing two people through a proxy number, listing, ending."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from .. import events
from ..callbacks import record
from ..database import begin_write
from ..extensions import db
from ..models import Chat, Message, Route, utcnow
from ..outbox import queue_message
from ..proxy import InvalidNumber, choose_proxy, mask_for_log, parse_number, region_of, render
from ..states import ChatStatus, Kind
from .errors import Conflict, InvalidInput, NotFound
from .pool import is_proxy_number, pool_entries

log = logging.getLogger(__name__)

MAX_LABEL = 60
MAX_REFERENCE = 120


@dataclass(frozen=True)
class ChatRequest:
    """A validated request to pair two numbers."""

    a: str
    b: str
    a_label: str | None
    b_label: str | None
    reference: str | None


def _clean_text(value: object, field: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be text", field=field)
    value = value.strip()
    if len(value) > limit:
        raise InvalidInput(f"{field} is longer than {limit} characters", field=field)
    return value or None


def validate_chat_request(
    a: object, b: object, a_label: object = None, b_label: object = None, reference: object = None
) -> ChatRequest:
    """Check a pairing request; raise InvalidInput naming the first bad field."""
    region = current_app.config["DEFAULT_REGION"]
    numbers = {}
    for field, raw in (("a", a), ("b", b)):
        try:
            numbers[field] = parse_number(raw, region)
        except InvalidNumber as exc:
            shown = f"{raw!r} is {exc}" if isinstance(raw, str) and raw.strip() else str(exc)
            raise InvalidInput(f"{field}: {shown}", field=field) from None
        if is_proxy_number(numbers[field]):
            raise InvalidInput(
                f"{field}: {numbers[field]} is one of our proxy numbers, not a participant", field=field
            )
    if numbers["a"] == numbers["b"]:
        raise InvalidInput("b: both participants have the same number", field="b")
    return ChatRequest(
        a=numbers["a"],
        b=numbers["b"],
        a_label=_clean_text(a_label, "a_label", MAX_LABEL),
        b_label=_clean_text(b_label, "b_label", MAX_LABEL),
        reference=_clean_text(reference, "reference", MAX_REFERENCE),
    )


def _describe(label: str | None) -> str:
    """How a party is named to the other: "your driver", or the configured default."""
    if not label:
        return current_app.config["LABEL_DEFAULT"]
    return label if label.lower().startswith("your ") else f"your {label.lower()}"


def queue_to_party(chat: Chat, side: str, kind: str, text: str, source_id: int | None = None) -> Message:
    """Queue an SMS from the chat's proxy number to one of its parties."""
    return queue_message(
        to=chat.number(side),
        sender=chat.proxy_number,
        text=text,
        kind=kind,
        chat_id=chat.id,
        side=side,
        source_id=source_id,
    )


def _allocate(req: ChatRequest) -> str:
    pool = pool_entries()
    if not pool:
        raise Conflict(
            "The pool has no proxy numbers: add one (PROXY_NUMBERS, or `flask numbers add`)",
            field="proxy_number",
        )
    busy = set(
        db.session.scalars(select(Route.proxy_number).where(Route.real_number.in_([req.a, req.b])))
    )
    previous = db.session.scalars(
        select(Chat.proxy_number)
        .where(
            or_(
                (Chat.a_number == req.a) & (Chat.b_number == req.b),
                (Chat.a_number == req.b) & (Chat.b_number == req.a),
            )
        )
        .order_by(Chat.created_at.desc(), Chat.id.desc())
        .limit(5)
    ).all()
    number = choose_proxy(pool, busy, {region_of(req.a), region_of(req.b)}, previous)
    if number is None:
        raise Conflict(
            "No proxy number is free for both participants: add numbers to the pool "
            "(`flask numbers add`) or end one of their active chats",
            field="proxy_number",
        )
    return number


def start_chat(req: ChatRequest, created_by: str | None = None) -> Chat:
    """Pair two people: allocate a proxy number, bind their routes, queue the introductions."""
    cfg = current_app.config
    for attempt in range(5):
        begin_write()
        number = _allocate(req)
        chat = Chat(
            a_number=req.a,
            b_number=req.b,
            a_label=req.a_label,
            b_label=req.b_label,
            reference=req.reference,
            proxy_number=number,
            created_by=created_by,
        )
        db.session.add(chat)
        chat.routes = [
            Route(real_number=req.a, proxy_number=number),
            Route(real_number=req.b, proxy_number=number),
        ]
        try:
            db.session.flush()
        except IntegrityError:
            # Another pairing took one of these routes between our read and our write: choose again.
            db.session.rollback()
            log.info("route race while pairing, retrying (attempt %d)", attempt + 1)
            continue
        for side, other in (("a", "b"), ("b", "a")):
            text = render(cfg["INTRO_TEMPLATE"], {"other": _describe(chat.label(other)), "proxy": number})
            queue_to_party(chat, side, Kind.INTRO, text)
        record.chat_created(chat)  # last write of the transaction (callbacks/record.py)
        db.session.commit()
        break
    else:
        raise Conflict("Could not pair these numbers under contention; try again", field="proxy_number")
    log.info(
        "chat %d started: %s <-> %s via %s",
        chat.id,
        mask_for_log(req.a),
        mask_for_log(req.b),
        mask_for_log(number),
    )
    events.announce(events.chat_created, chat_id=chat.id)
    return chat


def get_chat(chat_id: int) -> Chat:
    chat = db.session.get(Chat, chat_id)
    if chat is None:
        raise NotFound(f"no chat with id {chat_id}", field="id")
    return chat


def list_chats(status: str | None = None, limit: int = 100, offset: int = 0) -> list[Chat]:
    if status not in (None, "active", "ended"):
        raise InvalidInput("status must be 'active' or 'ended'", field="status")
    query = select(Chat).order_by(Chat.last_activity_at.desc(), Chat.id.desc()).limit(limit).offset(offset)
    if status:
        query = query.where(Chat.status == status)
    return list(db.session.scalars(query))


def find_chats(
    status: str | None = None, reference: str | None = None, limit: int = 100, offset: int = 0
) -> tuple[list[Chat], int]:
    """One page of chats (most recently active first) and how many match in all: by status and/or the
    caller's own reference (exact match)."""
    if status not in (None, "active", "ended"):
        raise InvalidInput("status must be 'active' or 'ended'", field="status")
    conditions = []
    if status:
        conditions.append(Chat.status == status)
    if reference is not None:
        conditions.append(Chat.reference == reference)
    total = db.session.scalar(select(func.count()).select_from(Chat).where(*conditions)) or 0
    page = db.session.scalars(
        select(Chat).where(*conditions).order_by(Chat.last_activity_at.desc(), Chat.id.desc())
        .limit(limit).offset(offset)
    )
    return list(page), int(total)


def end_chat(chat_id: int, reason: str = "operator") -> Chat:
    """End a chat: free its routes and (by configuration) tell both parties."""
    begin_write()
    chat = get_chat(chat_id)
    if chat.status != ChatStatus.ACTIVE:
        raise Conflict(f"chat {chat_id} has already ended", field="id")
    close_chat(chat, reason)
    db.session.commit()
    log.info("chat %d ended (%s)", chat.id, reason)
    events.announce(events.chat_ended, chat_id=chat.id)
    return chat


def close_chat(chat: Chat, reason: str, notices: dict[str, str] | None = None) -> None:
    """End a chat inside the caller's transaction, freeing its routes and queueing `notices` by side.

    Without `notices`, both parties get the configured end notice when SEND_END_NOTICE is on.
    """
    cfg = current_app.config
    now = utcnow()
    chat.status = ChatStatus.ENDED
    chat.ended_reason = reason
    chat.ended_at = now
    chat.last_activity_at = now
    chat.routes.clear()  # delete-orphan: frees the routing keys
    if notices is None:
        end_text = render(cfg["END_TEMPLATE"], {"proxy": chat.proxy_number})
        notices = {"a": end_text, "b": end_text} if cfg["SEND_END_NOTICE"] else {}
    for side, text in notices.items():
        queue_to_party(chat, side, Kind.NOTICE, text)
    record.chat_ended(chat)  # after the notices: event lanes are locked last (callbacks/record.py)


def mark_read(chat_id: int) -> bool:
    """A dispatcher has the chat open: clear its unread marker (and tell the other dashboards)."""
    changed = db.session.execute(
        update(Chat).where(Chat.id == chat_id, Chat.unread > 0).values(unread=0)
    ).rowcount
    db.session.commit()
    if changed:
        events.announce(events.chat_read, chat_id=chat_id)
    return bool(changed)


def messages_of(chat_id: int) -> list[Message]:
    return list(db.session.scalars(select(Message).where(Message.chat_id == chat_id).order_by(Message.id)))
