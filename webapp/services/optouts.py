"""The opt-out register: people who texted STOP (or a synonym) are not paired again until they text START.

A STOP to any pool number registers the sender (inbound.py calls `register` in the webhook's transaction);
pairing a registered number is refused with 409 naming the field (`refuse_opted_out`, called by start_chat);
START or UNSTOP to any pool number lifts it, with a confirmation SMS from that number (`lift`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from flask import current_app
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from .. import audit
from ..extensions import db
from ..models import OptOut, utcnow
from ..outbox import queue_message
from ..proxy import mask, mask_for_log, render
from ..states import Action, Kind
from .errors import Conflict

log = logging.getLogger(__name__)


def opted_out(numbers: Iterable[str]) -> set[str]:
    """Which of these numbers are in the register."""
    wanted = list(numbers)
    if not wanted:
        return set()
    return set(db.session.scalars(select(OptOut.number).where(OptOut.number.in_(wanted))))


def refuse_opted_out(sides: dict[str, str]) -> None:
    """Raise Conflict naming the first side ("a", "b") whose number opted out."""
    blocked = opted_out(sides.values())
    for side, number in sides.items():
        if number in blocked:
            raise Conflict(
                f"{side}: this person opted out (they texted STOP) and cannot be paired until they text "
                "START to one of our numbers",
                field=side,
            )


def register(number: str, proxy: str | None, chat_id: int | None, actor: str) -> bool:
    """Add `number` to the register in the caller's transaction; False when it was there already."""
    conn = db.session.connection()
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = (
        insert(OptOut)
        .values(number=number, proxy_number=proxy, chat_id=chat_id, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["number"])
        .returning(OptOut.id)
    )
    added = conn.execute(stmt).scalar() is not None
    if added:
        audit.record(actor, Action.OPT_OUT_ADDED, chat_id, f"{mask(number)} texted STOP to {proxy or '?'}")
        log.info("opt-out registered for %s", mask_for_log(number))
    return added


def lift(number: str, proxy: str, actor: str, chat_id: int | None = None) -> bool:
    """Remove `number` from the register and queue the confirmation from `proxy`; False when not registered."""
    removed = db.session.execute(delete(OptOut).where(OptOut.number == number)).rowcount
    if not removed:
        return False
    text = render(current_app.config["OPT_IN_TEMPLATE"], {"proxy": proxy})
    queue_message(to=number, sender=proxy, text=text, kind=Kind.NOTICE, chat_id=chat_id)
    audit.record(actor, Action.OPT_OUT_LIFTED, chat_id, f"{mask(number)} texted START to {proxy}")
    log.info("opt-out lifted for %s", mask_for_log(number))
    return True


def list_opt_outs(limit: int = 100, offset: int = 0) -> list[OptOut]:
    """The register, newest first."""
    query = select(OptOut).order_by(OptOut.created_at.desc(), OptOut.id.desc()).limit(limit).offset(offset)
    return list(db.session.scalars(query))


def count_opt_outs() -> int:
    return db.session.scalar(select(func.count()).select_from(OptOut)) or 0
