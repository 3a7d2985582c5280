"""The audit trail: who did what, when, to which chat.

`record()` adds one row to the caller's session, so it commits (or rolls back) with the action it describes:
an action that did not happen leaves no record, and one that happened always has one. Actors are named the
same way everywhere (`states.Actor`): `api`, `operator:<name>`, `cli`, `system` (scheduled jobs),
`participant:a|b` (a chat's party, by a text such as STOP) and `sms` (a text from outside any chat).

Details are for people reading the Activity page: ids, labels and masked numbers, never message text.
"""

from __future__ import annotations

from sqlalchemy import select

from .extensions import db
from .models import AuditEvent, clip

MAX_LIMIT = 1000


def record(actor: str | None, action: str, chat_id: int | None = None, detail: str | None = None) -> AuditEvent:
    """Add an audit event to the current transaction (the caller commits)."""
    event = AuditEvent(
        actor=clip(AuditEvent.actor, actor or "system"),
        action=str(action),
        chat_id=chat_id,
        detail=clip(AuditEvent.detail, detail),
    )
    db.session.add(event)
    return event


def recent(limit: int = 50, before: int | None = None, chat_id: int | None = None) -> list[AuditEvent]:
    """The newest events first (by id, which is the order they were committed in for one writer)."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(min(max(limit, 1), MAX_LIMIT))
    if before is not None:
        query = query.where(AuditEvent.id < before)
    if chat_id is not None:
        query = query.where(AuditEvent.chat_id == chat_id)
    return list(db.session.scalars(query))
