"""Housekeeping of event callbacks, run as a scheduled job (jobs.py).

- events delivered (or given up) more than EVENTS_KEEP_DAYS ago are deleted;
- lanes with nothing pending, held or failing are deleted (the next event of that chat opens a new one).
Each in batches by index, so a run costs the same whatever the table sizes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, exists, select

from ..database import begin_write
from ..extensions import db
from ..models import CallbackEvent, CallbackLane, utcnow
from ..states import CallbackStatus

BATCH = 1000
_events = CallbackEvent.__table__
_lanes = CallbackLane.__table__


def _delete_batch(table, ids_query) -> int:
    ids = list(db.session.scalars(ids_query.limit(BATCH)))
    db.session.rollback()
    if not ids:
        return 0
    begin_write()
    gone = db.session.execute(delete(table).where(table.c.id.in_(ids))).rowcount
    db.session.commit()
    return gone


def purge(now: datetime | None = None) -> dict[str, int]:
    """Delete what is no longer needed; {what: rows deleted}."""
    cfg = current_app.config
    now = now or utcnow()
    kept_from = now - timedelta(days=float(cfg["EVENTS_KEEP_DAYS"]))
    done = {"events": 0, "lanes": 0}
    for status in (CallbackStatus.DELIVERED, CallbackStatus.FAILED):
        done["events"] += _delete_batch(_events, select(_events.c.id).where(
            _events.c.status == status, _events.c.finished_at < kept_from))
    pending = exists().where(_events.c.lane == _lanes.c.key, _events.c.status == CallbackStatus.PENDING)
    idle = select(_lanes.c.id).where(
        _lanes.c.due_at.is_(None), _lanes.c.leased_until.is_(None), _lanes.c.failing_since.is_(None), ~pending)
    ids = list(db.session.scalars(idle.limit(BATCH)))
    db.session.rollback()
    if ids:
        begin_write()
        # checked again under the write: a lane an event was just recorded into is due, so it stays
        done["lanes"] = db.session.execute(
            delete(_lanes).where(_lanes.c.id.in_(ids), _lanes.c.due_at.is_(None), _lanes.c.leased_until.is_(None),
                                 ~pending)
        ).rowcount
        db.session.commit()
    return done
