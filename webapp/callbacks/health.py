"""Are deliveries to EVENTS_URL working? A summary for the dashboard and /healthz, from indexed queries only.

A lane is *failing* while its head keeps failing (`callback_lanes.failing_since`, set by the sender and cleared
by the next delivery), so "failing" means the receiver refuses or times out right now, and `waiting_chats`
says how many chats' events are held up behind it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from ..extensions import db
from ..models import CallbackEvent, CallbackLane, utcnow
from ..states import CallbackStatus

_events = CallbackEvent.__table__
_lanes = CallbackLane.__table__


def delivery_health() -> dict[str, Any]:
    """{"configured": False} without EVENTS_URL; else whether deliveries fail now and what was given up."""
    if not current_app.config.get("EVENTS_URL"):
        return {"configured": False, "failing": False}
    now = utcnow()
    failing = _lanes.c.failing_since.is_not(None)
    waiting, since = db.session.execute(select(func.count(), func.min(_lanes.c.failing_since)).where(failing)).one()
    last_error = db.session.scalar(
        select(_lanes.c.last_error).where(failing).order_by(_lanes.c.failing_since.desc()).limit(1)
    )
    given_up = db.session.scalar(
        select(func.count()).select_from(_events).where(
            _events.c.status == CallbackStatus.FAILED, _events.c.finished_at >= now - timedelta(hours=24))
    ) or 0
    delivered_at = db.session.scalar(
        select(func.max(_events.c.finished_at)).where(_events.c.status == CallbackStatus.DELIVERED)
    )
    return {
        "configured": True,
        "failing": bool(waiting),
        "waiting_chats": int(waiting or 0),
        "failing_since": since.isoformat() if since else None,
        "last_error": last_error if waiting else None,
        "given_up_24h": int(given_up),
        "last_delivered_at": delivered_at.isoformat() if delivered_at else None,
    }
