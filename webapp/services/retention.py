"""Retention: message texts are cleared RETENTION_DAYS after their chat ended (0 = kept forever).

A cleared text reads "(removed after N days)" everywhere (dashboard, API, transcript), and `purged_at` is set
on the message and on its chat. Everything else stays: who, when, kinds, delivery states, reasons, the audit
trail. Texts that never belonged to a chat (unrouted texts, auto-replies, STOP/START confirmations) are cleared
N days after they arrived. The parts of a multipart text held on their way in are cleared with it.

Run daily by the job `purge-old-texts` (jobs.py) and on demand by `flask retention purge [--dry-run]`. Rows
are found by indexes that lead to what is still to clear ((status, purged_at, ended_at) on chats, a partial
one on texts outside chats), in batches, each its own transaction, so a run costs what it clears, not what
was cleared before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import Select, func, select, update

from .. import audit
from ..database import begin_write
from ..extensions import db
from ..models import Chat, HeldPart, Message, utcnow
from ..states import Action, Actor, ChatStatus

log = logging.getLogger(__name__)

BATCH = 500


@dataclass(frozen=True)
class PurgeCounts:
    chats: int  # ended chats whose texts were cleared
    messages: int  # texts cleared in those chats
    chatless: int  # texts outside any chat cleared

    @property
    def total(self) -> int:
        return self.messages + self.chatless


def removed_text(days: int) -> str:
    """What a cleared text reads as."""
    return f"(removed after {days} day{'' if days == 1 else 's'})"


def _due_chats(cutoff: datetime, limit: int) -> list[int]:
    return list(
        db.session.scalars(
            select(Chat.id)
            .where(Chat.status == ChatStatus.ENDED, Chat.purged_at.is_(None), Chat.ended_at < cutoff)
            .order_by(Chat.ended_at)
            .limit(limit)
        )
    )


def _due_chatless(cutoff: datetime, limit: int) -> list[int]:
    return list(
        db.session.scalars(
            select(Message.id)
            .where(Message.chat_id.is_(None), Message.purged_at.is_(None), Message.created_at < cutoff)
            .order_by(Message.created_at)
            .limit(limit)
        )
    )


def _clear_parts(message_ids: Select) -> None:
    db.session.execute(update(HeldPart).where(HeldPart.message_id.in_(message_ids)).values(text=""))


def _next(ids: list[int]) -> list[int]:
    """End the read that found `ids` before writing (SQLite must start a writer with BEGIN IMMEDIATE)."""
    db.session.rollback()
    return ids


def count_due(days: int, now: datetime | None = None) -> PurgeCounts:
    """What `purge(days)` would clear now (the dry run)."""
    cutoff = (now or utcnow()) - timedelta(days=days)
    chats = (
        select(Chat.id)
        .where(Chat.status == ChatStatus.ENDED, Chat.purged_at.is_(None), Chat.ended_at < cutoff)
        .scalar_subquery()
    )
    n_chats = db.session.scalar(
        select(func.count())
        .select_from(Chat)
        .where(Chat.status == ChatStatus.ENDED, Chat.purged_at.is_(None), Chat.ended_at < cutoff)
    )
    n_messages = db.session.scalar(
        select(func.count()).select_from(Message).where(Message.chat_id.in_(chats), Message.purged_at.is_(None))
    )
    n_chatless = db.session.scalar(
        select(func.count())
        .select_from(Message)
        .where(Message.chat_id.is_(None), Message.purged_at.is_(None), Message.created_at < cutoff)
    )
    db.session.rollback()
    return PurgeCounts(n_chats or 0, n_messages or 0, n_chatless or 0)


def purge(days: int, now: datetime | None = None, actor: str = Actor.SYSTEM) -> PurgeCounts:
    """Clear the texts of chats ended more than `days` days ago, and of chatless texts that old."""
    if days <= 0:
        raise ValueError("days must be 1 or more (RETENTION_DAYS=0 keeps texts forever)")
    now = now or utcnow()
    cutoff = now - timedelta(days=days)
    marker = removed_text(days)
    n_chats = n_messages = n_chatless = 0
    while ids := _next(_due_chats(cutoff, BATCH)):
        begin_write()
        in_chats = select(Message.id).where(Message.chat_id.in_(ids))
        _clear_parts(in_chats)
        n_messages += db.session.execute(
            update(Message)
            .where(Message.chat_id.in_(ids), Message.purged_at.is_(None))
            .values(text=marker, purged_at=now)
        ).rowcount
        db.session.execute(update(Chat).where(Chat.id.in_(ids)).values(purged_at=now))
        n_chats += len(ids)
        db.session.commit()
    while ids := _next(_due_chatless(cutoff, BATCH)):
        begin_write()
        _clear_parts(select(Message.id).where(Message.id.in_(ids)))
        n_chatless += db.session.execute(
            update(Message)
            .where(Message.id.in_(ids), Message.purged_at.is_(None))
            .values(text=marker, purged_at=now)
        ).rowcount
        db.session.commit()
    counts = PurgeCounts(n_chats, n_messages, n_chatless)
    if n_chats or n_chatless:
        begin_write()
        audit.record(
            actor,
            Action.TEXTS_PURGED,
            detail=f"{n_messages} text(s) of {n_chats} chat(s) ended before {cutoff:%Y-%m-%d %H:%M} UTC and "
            f"{n_chatless} text(s) outside chats cleared (RETENTION_DAYS={days})",
        )
        db.session.commit()
        log.info(
            "retention cleared %d text(s) of %d chat(s) and %d outside chats", n_messages, n_chats, n_chatless
        )
    return counts


def purge_old_texts() -> PurgeCounts | None:
    """The daily job: purge by RETENTION_DAYS; nothing when it is 0."""
    days = int(current_app.config["RETENTION_DAYS"])
    return purge(days) if days > 0 else None
