"""Ending chats at their deadline: the time limit (`expires_at`) or the idle deadline (`idle_at`).

Run every few seconds by the job `expire-chats` (jobs.py). Due chats are found by index ((status, expires_at)
and (status, idle_at), models.Chat), so a run costs what it ends, whatever the history; each is ended in its own
transaction through `close_chat` (routes freed, end notice to both parties from the proxy number, audit
record), then `events.chat_ended` is announced. A chat that fails is logged, skipped for a while and reported
(the job then shows as failing on /healthz); the others are ended regardless.

Several processes may run the job at once: a chat is taken with FOR UPDATE SKIP LOCKED on PostgreSQL (the
writer lock on SQLite) and its deadline is checked again under the lock, since a text may have just moved it.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from flask import current_app
from sqlalchemy import select

from .. import events
from ..database import begin_write
from ..extensions import db
from ..models import Chat, utcnow
from ..states import Actor, ChatStatus, EndedReason
from .chats import close_chat

log = logging.getLogger(__name__)

BATCH = 200  # chats looked up per query
MAX_ROUNDS = 25  # batches per run at most, so one run ends (the next picks up the rest)
RETRY_FAILED_AFTER = 60.0  # seconds a chat that failed to end is left alone


class ExpiryIncomplete(RuntimeError):
    """Some due chats could not be ended (each was logged); the job reports it on /healthz."""


def reason_due(chat: Chat, now: datetime) -> str | None:
    """`expired` when the time limit has passed, else `idle` when the idle deadline has, else None."""
    if chat.expires_at is not None and chat.expires_at <= now:
        return EndedReason.EXPIRED
    if chat.idle_at is not None and chat.idle_at <= now:
        return EndedReason.IDLE
    return None


def _failing() -> dict[int, float]:
    """Chat ids that failed to end, with when they may be tried again (per app, in memory)."""
    return current_app.extensions.setdefault("expiry_failing", {})


def due_chat_ids(now: datetime, limit: int = BATCH, skip: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """Active chats past their time limit or idle deadline, earliest deadline first."""
    found: dict[int, datetime] = {}
    for column in (Chat.expires_at, Chat.idle_at):
        query = (
            select(Chat.id, column)
            .where(Chat.status == ChatStatus.ACTIVE, column <= now)
            .order_by(column)
            .limit(limit + len(skip))
        )
        for chat_id, deadline in db.session.execute(query):
            if chat_id not in skip:
                found[chat_id] = min(deadline, found.get(chat_id, deadline))
    return sorted(found, key=lambda cid: found[cid])[:limit]


def _end_one(chat_id: int, now: datetime) -> bool:
    """End one due chat in its own transaction; False when it is not due (any more) or someone holds it."""
    begin_write()
    chat = db.session.scalars(
        select(Chat)
        .where(Chat.id == chat_id)
        .with_for_update(skip_locked=True, key_share=True)
        .execution_options(populate_existing=True)
    ).first()
    reason = reason_due(chat, now) if chat is not None and chat.status == ChatStatus.ACTIVE else None
    if chat is None or reason is None:
        db.session.rollback()
        return False
    close_chat(chat, reason, actor=Actor.SYSTEM)
    db.session.commit()
    log.info("chat %d ended (%s)", chat_id, reason)
    events.announce(events.chat_ended, chat_id=chat_id)
    return True


def expire_due_chats(now: datetime | None = None) -> list[int]:
    """End every chat whose deadline has passed; returns the ids ended. Raises ExpiryIncomplete at the end
    when some could not be ended (the others are ended all the same)."""
    failing = _failing()
    clock = time.monotonic()
    for chat_id, retry_at in list(failing.items()):
        if retry_at <= clock:
            del failing[chat_id]
    ended: list[int] = []
    failed: list[int] = []
    passed: set[int] = set()  # not due any more, or held by another process: not looked at again this run
    for _ in range(MAX_ROUNDS):
        at = now or utcnow()
        due = due_chat_ids(at, BATCH, set(failing) | set(failed) | passed)
        db.session.rollback()  # end the read; each chat gets its own write transaction
        if not due:
            break
        for chat_id in due:
            try:
                if _end_one(chat_id, at):
                    ended.append(chat_id)
                else:
                    passed.add(chat_id)
            except Exception as exc:
                db.session.rollback()
                failed.append(chat_id)
                failing[chat_id] = time.monotonic() + RETRY_FAILED_AFTER
                log.error("chat %d could not be ended at its deadline (%s)", chat_id, type(exc).__name__)
                log.debug("chat %d expiry failure", chat_id, exc_info=True)
        if len(due) < BATCH:
            break
    if failed:
        raise ExpiryIncomplete(f"{len(failed)} due chat(s) could not be ended: {failed[:10]}")
    return ended
