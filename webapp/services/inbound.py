"""Inbound SMS: store what Vonage handed us, and queue its relay in the same transaction."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy import text as text_sql
from sqlalchemy.exc import IntegrityError

from .. import events
from ..callbacks import record
from ..database import begin_write
from ..extensions import db
from ..models import Chat, HeldPart, Message, Route, clip, utcnow
from ..outbox import queue_message
from ..proxy import (
    InvalidNumber,
    Parties,
    is_keyword,
    is_opt_in,
    is_opt_out,
    mask_for_log,
    other_party,
    parse_number,
    render,
)
from ..states import Actor, Kind
from .autoreply import may_auto_reply
from .chats import close_chat, queue_to_party
from .errors import InvalidInput
from .optouts import lift, opted_out, register
from .pool import is_proxy_number
from .relay import redaction, relayable, try_relay
from .unrouted import last_chat_of

log = logging.getLogger(__name__)

MAX_TEXT = 10_000  # far above Vonage's 3,200-character limit; larger input is refused, not cut
MAX_ID = 64
MAX_PARTS = 255  # concat-total travels in one byte of the UDH
MISSING_MARKER = "[part {part} of {total} missing]"
MISSING_RUN_MARKER = "[parts {first}-{last} of {total} missing]"  # consecutive missing parts: one marker


@dataclass(frozen=True)
class Inbound:
    """Outcome of one inbound webhook. `outcome`: relayed, duplicate, unrouted, opt_out, opt_in, empty, held."""

    outcome: str
    message_id: int | None
    chat_id: int | None = None


def _number(params: Mapping[str, str], field: str) -> str:
    raw = params.get(field)
    if not raw:
        raise InvalidInput(f"{field} is required", field=field)
    try:
        return _webhook_number(raw)
    except InvalidNumber as exc:
        raise InvalidInput(f"{field} is {exc}", field=field) from None


@lru_cache(maxsize=8192)
def _webhook_number(raw: str) -> str:
    """A webhook's number in E.164. The same few thousand senders and proxy numbers come back all day, and
    parsing one costs more than storing the text it came with: results are kept (a pure function; a number
    that does not parse raises every time)."""
    # Vonage sends international digits without "+"; never read them in a national plan.
    return parse_number("+" + raw.lstrip("+ ") if raw.strip()[:1].isdigit() else raw, "ZZ")


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


def parse_concat(params: Mapping[str, str]) -> tuple[str, int, int] | None:
    """(concat-ref, concat-total, concat-part) of a multipart part, None for a whole SMS, or InvalidInput."""
    ref = (params.get("concat-ref") or "").strip()
    raw_total, raw_part = params.get("concat-total"), params.get("concat-part")
    if not ref and not raw_total and not raw_part:
        return None
    if not ref or len(ref) > 32:
        raise InvalidInput(
            "concat-ref is required for a multipart SMS (at most 32 characters)", field="concat-ref"
        )
    try:
        total, part = int(str(raw_total).strip()), int(str(raw_part).strip())
    except ValueError:
        raise InvalidInput("concat-total and concat-part must be numbers", field="concat-part") from None
    if not 1 <= total <= MAX_PARTS or not 1 <= part <= total:
        raise InvalidInput(
            f"concat-part must be within 1..concat-total (at most {MAX_PARTS})", field="concat-part"
        )
    return None if total == 1 else (ref, total, part)


def _already_have(provider_id: str | None) -> int | None:
    """The inbound message this Vonage messageId was stored as (0 for a held part), or None."""
    if provider_id is None:
        return None
    found = db.session.scalar(select(Message.id).where(Message.provider_id == provider_id))
    if found is not None:
        return found
    held = db.session.scalar(select(HeldPart).where(HeldPart.provider_id == provider_id))
    if held is not None:
        return held.message_id or 0
    return None


def receive_sms(params: Mapping[str, str]) -> Inbound:
    """Store one inbound SMS (or one part of a multipart SMS) and everything it causes, atomically; then
    announce it.

    Duplicates (same Vonage messageId, or a part already held) are recognised and change nothing.
    """
    sender, proxy, text, provider_id = parse_inbound(params)
    concat = parse_concat(params)
    if concat is None and relayable(text) and (fast := try_relay(sender, proxy, text, provider_id)) is not None:
        if fast.message_id is None:  # ON CONFLICT: this messageId is stored already
            return Inbound("duplicate", _already_have(provider_id))
        result = Inbound("relayed", fast.message_id, fast.chat_id)
        _announce(result, sender, proxy)
        return result
    begin_write()
    if (existing := _already_have(provider_id)) is not None:
        db.session.rollback()
        return Inbound("duplicate", existing or None)
    try:
        # The flushes inside _store/_hold_part can hit the messageId constraint too, not only the commit.
        if concat is None:
            result = _store(sender, proxy, text, provider_id)
        else:
            result = _hold_part(sender, proxy, text, provider_id, *concat)
        db.session.commit()
    except IntegrityError:
        # The same messageId arrived concurrently and the other copy committed first.
        db.session.rollback()
        if (existing := _already_have(provider_id)) is None:
            raise
        return Inbound("duplicate", existing or None)
    _announce(result, sender, proxy)
    return result


def _announce(result: Inbound, sender: str, proxy: str) -> None:
    log.info(
        "inbound sms %s from %s to %s: %s",
        result.message_id,
        mask_for_log(sender),
        mask_for_log(proxy),
        result.outcome,
    )
    if result.message_id is None:
        if result.outcome == "held" and result.chat_id is not None:
            events.announce(events.part_held, chat_id=result.chat_id)
        return
    events.announce(events.message_added, chat_id=result.chat_id, message_id=result.message_id)
    if result.chat_id is not None and result.outcome == "opt_out":
        events.announce(events.chat_ended, chat_id=result.chat_id)


def _lock_set(sender: str, proxy: str, ref: str) -> None:
    """Serialise the parts of one set. SQLite's BEGIN IMMEDIATE already does; PostgreSQL needs a lock."""
    if db.session.get_bind().dialect.name != "postgresql":
        return
    key = int.from_bytes(hashlib.sha256(f"{sender}|{proxy}|{ref}".encode()).digest()[:8], "big", signed=True)
    db.session.execute(text_sql("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def _open_parts(sender: str, proxy: str, ref: str) -> list[HeldPart]:
    return list(
        db.session.scalars(
            select(HeldPart)
            .where(
                HeldPart.sender == sender,
                HeldPart.proxy_number == proxy,
                HeldPart.concat_ref == ref,
                HeldPart.message_id.is_(None),
            )
            .order_by(HeldPart.part)
        )
    )


def _hold_part(
    sender: str, proxy: str, text: str, provider_id: str | None, ref: str, total: int, part: int
) -> Inbound:
    """Hold one part; when its set is complete, store and relay the whole text in part order."""
    _lock_set(sender, proxy, ref)
    held = _open_parts(sender, proxy, ref)
    if any(p.part == part for p in held):
        return Inbound("duplicate", None)  # the same part again under another messageId
    new = HeldPart(
        provider_id=provider_id or f"local:{uuid.uuid4().hex}",
        sender=sender,
        proxy_number=proxy,
        concat_ref=ref,
        total=total,
        part=part,
        text=text,
    )
    db.session.add(new)
    held.append(new)
    if len({p.part for p in held}) < total:
        db.session.flush()
        # the chat whose transcript shows the text as arriving (none: it will be stored as unrouted)
        chat_id = db.session.scalar(
            select(Route.chat_id).where(Route.real_number == sender, Route.proxy_number == proxy)
        )
        return Inbound("held", None, chat_id)
    held.sort(key=lambda p: p.part)
    meta = {"concat_ref": ref, "parts": total}
    result = _store(sender, proxy, "".join(p.text for p in held), None, meta)
    for p in held:
        p.message_id = result.message_id
    return result


def flush_expired_parts(now: datetime | None = None) -> list[int]:
    """Relay every multipart set still incomplete after MULTIPART_TIMEOUT_SECONDS, with a visible marker
    where parts are missing. Returns the ids of the inbound messages stored."""
    timeout = timedelta(seconds=float(current_app.config["MULTIPART_TIMEOUT_SECONDS"]))
    cutoff = (now or utcnow()) - timeout
    keys = db.session.execute(
        select(HeldPart.sender, HeldPart.proxy_number, HeldPart.concat_ref)
        .where(HeldPart.message_id.is_(None), HeldPart.received_at < cutoff)
        .distinct()
    ).all()
    db.session.rollback()
    stored: list[int] = []
    for sender, proxy, ref in keys:
        try:
            message_id = _flush_set(sender, proxy, ref)
        except Exception as exc:  # one broken set must not keep the others from being relayed
            db.session.rollback()
            log.error("flushing an incomplete multipart set failed (%s)", type(exc).__name__)
            continue
        if message_id is not None:
            stored.append(message_id)
    return stored


def _flush_set(sender: str, proxy: str, ref: str) -> int | None:
    """Store and relay one timed-out set with markers for its missing parts; the stored message's id."""
    begin_write()
    _lock_set(sender, proxy, ref)
    held = _open_parts(sender, proxy, ref)
    if not held:  # completed or flushed meanwhile
        db.session.rollback()
        return None
    total = max(p.total for p in held)
    by_part = {p.part: p.text for p in held}
    missing = [i for i in range(1, total + 1) if i not in by_part]
    text = _with_markers(by_part, total)
    meta = {"concat_ref": ref, "parts": total, "incomplete": True, "missing": missing}
    result = _store(sender, proxy, text, None, meta)
    msg = db.session.get(Message, result.message_id)
    if msg is not None:
        which = ", ".join(map(str, missing))
        msg.error = clip(Message.error, f"incomplete multipart SMS: {len(missing)} of {total} parts never "
                                        f"arrived (part {which})")
    for p in held:
        p.message_id = result.message_id
    db.session.commit()
    log.warning("multipart sms %s relayed incomplete (%d of %d parts)", result.message_id, len(held), total)
    _announce(result, sender, proxy)
    return result.message_id


def _with_markers(by_part: dict[int, str], total: int) -> str:
    """The parts that arrived, in order, with one marker per run of missing parts (a forged "set" of 255
    parts with one present must not become 254 markers: dozens of paid segments)."""
    out: list[str] = []
    i = 1
    while i <= total:
        if i in by_part:
            out.append(by_part[i])
            i += 1
            continue
        last = i
        while last + 1 <= total and last + 1 not in by_part:
            last += 1
        marker = MISSING_MARKER if last == i else MISSING_RUN_MARKER
        out.append(marker.format(part=i, first=i, last=last, total=total))
        i = last + 1
    return "".join(out)


def _store(
    sender: str, proxy: str, text: str, provider_id: str | None, meta: dict[str, Any] | None = None
) -> Inbound:
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
        meta=meta,
    )
    db.session.add(msg)
    route = db.session.scalar(select(Route).where(Route.real_number == sender, Route.proxy_number == proxy))
    if route is None:
        msg.status = "unrouted"
        msg.last_chat_id = last_chat_of(sender, proxy)  # the conversation it was probably meant for
        db.session.flush()
        if is_keyword(text) and is_proxy_number(proxy) and _opt_keyword(sender, proxy, text, None, Actor.SMS):
            # the opt-out register took care of it: nothing for a dispatcher to do
            msg.handled_at, msg.handled_by = now, Actor.SYSTEM
            if is_opt_in(text):
                msg.meta = {**(msg.meta or {}), "keyword": "start"}
                return Inbound("opt_in", msg.id)
            msg.status = "opt_out"
            return Inbound("unrouted", msg.id)
        if cfg["AUTO_REPLY"] and not is_opt_out(text) and is_proxy_number(proxy):
            _maybe_auto_reply(sender, proxy)
        return Inbound("unrouted", msg.id)

    # Lock the chat row (PostgreSQL; SQLite holds the write lock already): concurrent messages of one
    # chat would otherwise lose updates of `unread`, and an end could slip between read and relay. FOR NO KEY
    # UPDATE, not FOR UPDATE: the foreign-key checks of other writers (KEY SHARE) must not wait for it (relay.py).
    chat = db.session.get(Chat, route.chat_id, with_for_update={"key_share": True}, populate_existing=True)
    assert chat is not None
    side, _ = other_party(Parties(chat.a_number, chat.b_number), sender)
    other = "b" if side == "a" else "a"
    msg.chat_id = chat.id
    msg.side = side
    chat.last_activity_at = now
    if chat.idle_timeout:
        chat.idle_at = now + timedelta(seconds=chat.idle_timeout)
    chat.unread = (chat.unread or 0) + 1
    if is_opt_out(text):
        msg.status = "opt_out"
        db.session.flush()
        register(sender, proxy, chat.id, Actor.participant(side))
        # the notice first, then the events (opted out, then ended): event lanes are locked last
        queue_to_party(chat, other, Kind.NOTICE, cfg["OPT_OUT_TEMPLATE"])
        record.participant_opted_out(chat, side, msg.id)
        close_chat(chat, "opt_out", {}, actor=Actor.participant(side))
        return Inbound("opt_out", msg.id, chat.id)
    db.session.flush()
    if not text.strip():
        record.message_received(chat, msg.id, side, text, msg.created_at)
        return Inbound("empty", msg.id, chat.id)
    if is_opt_in(text) and _opt_keyword(sender, proxy, text, chat.id, Actor.participant(side)):
        msg.meta = {**(msg.meta or {}), "keyword": "start"}
        return Inbound("opt_in", msg.id, chat.id)
    relayed = redaction(text, sender, cfg["DEFAULT_REGION"]) if cfg["REDACT_CONTACTS"] else None
    marker = {"redacted": list(relayed.found)} if relayed is not None else None
    if marker:
        msg.meta = {**(msg.meta or {}), **marker}
    queue_to_party(
        chat, other, Kind.RELAY, relayed.text if relayed else text, source_id=msg.id, meta=marker
    )
    record.message_received(chat, msg.id, side, text, msg.created_at)  # nothing unless EVENTS_URL is set
    return Inbound("relayed", msg.id, chat.id)


def _opt_keyword(sender: str, proxy: str, text: str, chat_id: int | None, actor: str) -> bool:
    """STOP registers the sender; START/UNSTOP lifts a registered sender's opt-out. True when handled.

    A START from someone who never opted out is an ordinary text (relayed in a chat, unrouted outside).
    """
    if is_opt_out(text):
        register(sender, proxy, chat_id, actor)
        return True
    if is_opt_in(text) and opted_out([sender]):
        return lift(sender, proxy, actor, chat_id)
    return False


def _maybe_auto_reply(sender: str, proxy: str) -> None:
    """Tell a stranger this number is not in a conversation, within the caps of services/autoreply.py."""
    cfg = current_app.config
    if not may_auto_reply(sender, cfg):
        return
    queue_message(
        to=sender, sender=proxy, text=render(cfg["AUTO_REPLY_TEMPLATE"], {"proxy": proxy}), kind=Kind.AUTO_REPLY
    )
