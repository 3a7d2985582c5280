"""Inbound SMS: store what Vonage handed us, and queue its relay in the same transaction."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .. import live, outbox
from ..database import begin_write
from ..extensions import db
from ..models import Chat, Message, Route, utcnow
from ..proxy import InvalidNumber, Parties, is_opt_out, mask_for_log, other_party, parse_number, render
from . import InvalidInput
from .chats import close_chat, queue_to_party
from .pool import is_proxy_number

log = logging.getLogger(__name__)

MAX_TEXT = 10_000  # far above Vonage's 3,200-character limit; larger input is refused, not cut
MAX_ID = 64


@dataclass(frozen=True)
class Inbound:
    """Outcome of one inbound webhook. `outcome`: relayed, duplicate, unrouted, opt_out, empty."""

    outcome: str
    message_id: int | None
    chat_id: int | None = None


def _number(params: Mapping[str, str], field: str) -> str:
    raw = params.get(field)
    if not raw:
        raise InvalidInput(f"{field} is required", field=field)
    try:
        # Vonage sends international digits without "+"; never read them in a national plan.
        return parse_number("+" + raw.lstrip("+ ") if raw.strip()[:1].isdigit() else raw, "ZZ")
    except InvalidNumber as exc:
        raise InvalidInput(f"{field} is {exc}", field=field) from None


def parse_inbound(params: Mapping[str, str]) -> tuple[str, str, str, str | None]:
    """(sender, proxy number, text, provider id) from webhook fields, or InvalidInput."""
    sender = _number(params, "msisdn")
    proxy = _number(params, "to")
    text = params.get("text") or ""
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"text is longer than {MAX_TEXT} characters", field="text")
    provider_id = (params.get("messageId") or "").strip() or None
    if provider_id and len(provider_id) > MAX_ID:
        raise InvalidInput(f"messageId is longer than {MAX_ID} characters", field="messageId")
    return sender, proxy, text, provider_id


def _already_have(provider_id: str | None) -> int | None:
    if provider_id is None:
        return None
    return db.session.scalar(select(Message.id).where(Message.provider_id == provider_id))


def receive_sms(params: Mapping[str, str]) -> Inbound:
    """Store one inbound SMS and everything it causes, atomically; then announce it.

    Duplicates (same Vonage messageId) are recognised and change nothing.
    """
    sender, proxy, text, provider_id = parse_inbound(params)
    begin_write()
    if (existing := _already_have(provider_id)) is not None:
        db.session.rollback()
        return Inbound("duplicate", existing)
    try:
        result = _store(sender, proxy, text, provider_id)  # its flushes can hit the constraint too
        db.session.commit()
    except IntegrityError:
        # The same messageId arrived concurrently and the other copy committed first.
        db.session.rollback()
        if (existing := _already_have(provider_id)) is None:
            raise
        return Inbound("duplicate", existing)
    log.info(
        "inbound sms %s from %s to %s: %s",
        result.message_id,
        mask_for_log(sender),
        mask_for_log(proxy),
        result.outcome,
    )
    live.message_added(result.chat_id, result.message_id)
    if result.chat_id is not None and result.outcome == "opt_out":
        live.chat_ended(result.chat_id)
    outbox.wake()
    return result


def _store(sender: str, proxy: str, text: str, provider_id: str | None) -> Inbound:
    cfg = current_app.config
    now = utcnow()
    msg = Message(
        direction="in",
        kind="sms",
        from_number=sender,
        to_number=proxy,
        text=text,
        provider_id=provider_id,
        status="received",
    )
    db.session.add(msg)
    route = db.session.scalar(select(Route).where(Route.real_number == sender, Route.proxy_number == proxy))
    if route is None:
        msg.status = "unrouted"
        db.session.flush()
        if cfg["AUTO_REPLY"] and not is_opt_out(text) and is_proxy_number(proxy):
            _maybe_auto_reply(sender, proxy)
        return Inbound("unrouted", msg.id)

    # Lock the chat row (PostgreSQL; SQLite holds the write lock already): concurrent messages of one
    # chat would otherwise lose updates of `unread`, and an end could slip between read and relay.
    chat = db.session.get(Chat, route.chat_id, with_for_update=True, populate_existing=True)
    assert chat is not None
    side, _ = other_party(Parties(chat.a_number, chat.b_number), sender)
    other = "b" if side == "a" else "a"
    msg.chat_id = chat.id
    msg.side = side
    chat.last_activity_at = now
    chat.unread = (chat.unread or 0) + 1
    if is_opt_out(text):
        msg.status = "opt_out"
        db.session.flush()
        close_chat(chat, "opt_out", {other: cfg["OPT_OUT_TEMPLATE"]})
        return Inbound("opt_out", msg.id, chat.id)
    db.session.flush()
    if not text.strip():
        return Inbound("empty", msg.id, chat.id)
    queue_to_party(chat, other, "relay", text, source_id=msg.id)
    return Inbound("relayed", msg.id, chat.id)


def _maybe_auto_reply(sender: str, proxy: str) -> None:
    """Tell a stranger this number is not in a conversation, at most once per interval per sender."""
    cfg = current_app.config
    since = utcnow() - timedelta(seconds=cfg["AUTO_REPLY_INTERVAL"])
    recent = db.session.scalar(
        select(Message.id)
        .where(Message.kind == "auto_reply", Message.to_number == sender, Message.created_at >= since)
        .limit(1)
    )
    if recent is not None:
        return
    db.session.add(
        Message(
            direction="out",
            kind="auto_reply",
            from_number=proxy,
            to_number=sender,
            text=render(cfg["AUTO_REPLY_TEMPLATE"], {"proxy": proxy}),
            status="queued",
            next_attempt_at=utcnow(),
        )
    )
