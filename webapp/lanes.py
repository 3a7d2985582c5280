"""Lanes, the statements the outbox (`lanes`, keyed by recipient) and the event sender (`callback_lanes`, keyed by
chat) share: opening a lane, and taking due lanes under a lease.

A lanes table has `id`, `due_at` (when its head may go; NULL while held or empty) and `leased_until`. Taking a lane
clears `due_at` and sets the lease, in one UPDATE over the oldest due lanes by index (`FOR UPDATE SKIP LOCKED` on
PostgreSQL, so two workers never take one lane; SQLite's writers are already one at a time). Its cost does not
grow with what is queued behind the lanes' heads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Connection, Table, case, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

_OPEN: dict[tuple[str, str], Any] = {}  # (table, dialect) -> the upsert, built once (building costs more than running)


def open_statement(lanes: Table, key: str, dialect: str) -> Any:
    """INSERT the lane due now, or make an existing idle lane due now (a held or already due lane is kept).
    Parameters: the lane's `key` column by name, and `due_at`."""
    cached = _OPEN.get((lanes.name, dialect))
    if cached is None:
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        stmt = insert(lanes)
        cached = _OPEN[(lanes.name, dialect)] = stmt.on_conflict_do_update(
            index_elements=[key],
            set_={
                "due_at": case(
                    (lanes.c.leased_until.is_(None), func.coalesce(lanes.c.due_at, stmt.excluded.due_at)),
                    else_=lanes.c.due_at,
                )
            },
        )
    return cached


def take_due(conn: Connection, lanes: Table, key: Column, now: datetime, lease_until: datetime,
             limit: int) -> list[Any]:
    """Lease up to `limit` lanes of `lanes` due at `now`, oldest due first; returns their `key` values."""
    due = (
        select(lanes.c.id)
        .where(lanes.c.due_at <= now)
        .order_by(lanes.c.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return list(conn.execute(
        update(lanes)
        .where(lanes.c.id.in_(due), lanes.c.due_at <= now)
        .values(due_at=None, leased_until=lease_until)
        .returning(key)
    ).scalars().all())
