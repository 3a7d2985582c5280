"""Chats: pairing two people through a proxy number, listing, ending."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from .. import audit, events
from ..callbacks import record
from ..database import begin_write
from ..extensions import db
from ..models import Chat, Message, Route, utcnow
from ..outbox import queue_message
from ..proxy import (
    InvalidNumber,
    choose_proxy,
    mask,
    mask_for_log,
    parse_number,
    region_of,
    render,
    sms_refusal,
)
from ..states import Action, Actor, ChatStatus, Kind
from .errors import Conflict, InvalidInput, NotFound, PoolExhausted
from .optouts import refuse_opted_out
from .pool import is_proxy_number, pool_entries

log = logging.getLogger(__name__)

MAX_LABEL = 60
MAX_REFERENCE = 120
# expires_in and idle_timeout, in seconds: a minute to a year
MIN_LIFETIME = 60
MAX_LIFETIME = 31_536_000


@dataclass(frozen=True)
class ChatRequest:
    """A validated request to pair two numbers."""

    a: str
    b: str
    a_label: str | None
    b_label: str | None
    reference: str | None
    expires_in: int | None = None  # seconds; None: CHAT_TTL_SECONDS
    idle_timeout: int | None = None  # seconds; None: CHAT_IDLE_SECONDS


def _seconds(value: object, field: str) -> int | None:
    """A lifetime in whole seconds within MIN..MAX_LIFETIME; None (absent, null, "") means the default."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{field} must be a whole number of seconds", field=field)
    if not MIN_LIFETIME <= value <= MAX_LIFETIME:
        raise InvalidInput(
            f"{field} must be between {MIN_LIFETIME} and {MAX_LIFETIME:,} seconds (a minute to a year)",
            field=field,
        )
    return value


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
    a: object,
    b: object,
    a_label: object = None,
    b_label: object = None,
    reference: object = None,
    expires_in: object = None,
    idle_timeout: object = None,
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
        refused = sms_refusal(numbers[field], bool(current_app.config.get("ALLOW_FIXED_LINE")))
        if refused is not None:
            shown = f"{raw.strip()!r}" if isinstance(raw, str) else numbers[field]
            raise InvalidInput(
                f"{field}: {shown} is {refused}, which cannot receive texts; give a mobile number",
                field=field,
            )
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
        expires_in=_seconds(expires_in, "expires_in"),
        idle_timeout=_seconds(idle_timeout, "idle_timeout"),
    )


def _lifetimes(req: ChatRequest, now: datetime) -> tuple[datetime | None, int | None, datetime | None]:
    """(expires_at, idle_timeout, idle_at) of a chat starting now: the request's, else the configured defaults."""
    cfg = current_app.config
    ttl = req.expires_in if req.expires_in is not None else int(cfg["CHAT_TTL_SECONDS"]) or None
    idle = req.idle_timeout if req.idle_timeout is not None else int(cfg["CHAT_IDLE_SECONDS"]) or None
    expires_at = now + timedelta(seconds=ttl) if ttl else None
    idle_at = now + timedelta(seconds=idle) if idle else None
    return expires_at, idle, idle_at


def _describe(label: str | None) -> str:
    """How a party is named to the other: "your driver", or the configured default."""
    if not label:
        return current_app.config["LABEL_DEFAULT"]
    # the label as the dispatcher wrote it: "Driver Bob" stays "your Driver Bob"
    return label if label.lower().startswith("your ") else f"your {label}"


def queue_to_party(
    chat: Chat,
    side: str,
    kind: str,
    text: str,
    source_id: int | None = None,
    meta: dict | None = None,
) -> Message:
    """Queue an SMS from the chat's proxy number to one of its parties."""
    return queue_message(
        to=chat.number(side),
        sender=chat.proxy_number,
        text=text,
        kind=kind,
        chat_id=chat.id,
        side=side,
        source_id=source_id,
        meta=meta,
    )


def _allocate(req: ChatRequest) -> str:
    pool = pool_entries()
    if not pool:
        raise PoolExhausted("The pool has no proxy numbers yet, so no chat can start.", can_end_chats=False)
    routes = db.session.execute(
        select(Route.real_number, Route.proxy_number).where(Route.real_number.in_([req.a, req.b]))
    ).all()
    busy = {proxy for _real, proxy in routes}
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
        raise PoolExhausted(_who_blocks(req, {p.number for p in pool}, routes), can_end_chats=True)
    return number


def _who_blocks(req: ChatRequest, pool: set[str], routes: list) -> str:
    """Which party already uses every pool number, in words for a dispatcher (numbers masked)."""

    def name(side: str) -> str:
        label = req.a_label if side == "a" else req.b_label
        return f"{label or 'Person ' + side.upper()} ({mask(req.a if side == 'a' else req.b)})"

    full = [side for side in ("a", "b")
            if pool <= {proxy for real, proxy in routes if real == (req.a if side == "a" else req.b)}]
    if len(full) == 2:
        return f"{name('a')} and {name('b')} are each already in a chat on every proxy number."
    if full:
        return f"{name(full[0])} is already in a chat on every proxy number."
    return (f"Between them, {name('a')} and {name('b')} are already in chats on every proxy number, "
            "so no number is free for both.")


def start_chat(req: ChatRequest, created_by: str | None = None, actor: str | None = None) -> Chat:
    """Pair two people: allocate a proxy number, bind their routes, queue the introductions.

    Refused (Conflict naming the field) when either person opted out. `actor` is who asked, as the audit
    trail names them (states.Actor); `created_by` is shown on the chat ("started by maria").
    """
    cfg = current_app.config
    for attempt in range(5):
        begin_write()
        refuse_opted_out({"a": req.a, "b": req.b})
        number = _allocate(req)
        now = utcnow()
        expires_at, idle_timeout, idle_at = _lifetimes(req, now)
        chat = Chat(
            a_number=req.a,
            b_number=req.b,
            a_label=req.a_label,
            b_label=req.b_label,
            reference=req.reference,
            proxy_number=number,
            created_by=created_by,
            created_at=now,
            last_activity_at=now,
            expires_at=expires_at,
            idle_timeout=idle_timeout,
            idle_at=idle_at,
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
        _audit_created(chat, actor or created_by)
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


def _audit_created(chat: Chat, actor: str | None) -> None:
    parts = [f"{mask(chat.a_number)} and {mask(chat.b_number)} via {chat.proxy_number}"]
    if chat.reference:
        parts.append(f"ref {chat.reference}")
    if chat.expires_at:
        parts.append(f"ends by {chat.expires_at.isoformat(timespec='seconds')}")
    if chat.idle_timeout:
        parts.append(f"ends after {chat.idle_timeout} s without texts")
    audit.record(actor, Action.CHAT_CREATED, chat.id, "; ".join(parts))


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


def end_chat(chat_id: int, reason: str = "operator", actor: str | None = None) -> Chat:
    """End a chat: free its routes and (by configuration) tell both parties. `actor`: who ended it."""
    begin_write()
    # Chat row first (PostgreSQL; SQLite's writer lock holds it already), then the lanes of the notices: the
    # order every writer of a chat's texts follows, so a webhook in the same chat never deadlocks with this.
    chat = db.session.get(Chat, chat_id, with_for_update={"key_share": True}, populate_existing=True)
    if chat is None:
        raise NotFound(f"no chat with id {chat_id}", field="id")
    if chat.status != ChatStatus.ACTIVE:
        raise Conflict(f"chat {chat_id} has already ended", field="id")
    close_chat(chat, reason, actor=actor or (Actor.API if reason == "api" else None))
    db.session.commit()
    log.info("chat %d ended (%s)", chat.id, reason)
    events.announce(events.chat_ended, chat_id=chat.id)
    return chat


def close_chat(
    chat: Chat, reason: str, notices: dict[str, str] | None = None, actor: str | None = None
) -> None:
    """End a chat inside the caller's transaction, freeing its routes and queueing `notices` by side.

    Without `notices`, both parties get the configured end notice when SEND_END_NOTICE is on. `actor` (who
    ended it, states.Actor) is kept on the chat and in the audit trail; None means the system.
    """
    cfg = current_app.config
    now = utcnow()
    chat.status = ChatStatus.ENDED
    chat.ended_reason = reason
    chat.ended_at = now
    chat.ended_by = actor or Actor.SYSTEM
    chat.last_activity_at = now
    chat.idle_at = None  # no longer due for the idle check
    chat.routes.clear()  # delete-orphan: frees the routing keys
    audit.record(chat.ended_by, Action.CHAT_ENDED, chat.id, f"reason: {reason}")
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
