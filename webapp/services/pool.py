"""The pool of proxy numbers."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select

from .. import audit, events
from ..extensions import db
from ..models import Chat, ProxyNumber
from ..proxy import InvalidNumber, PoolEntry, mask_for_log, parse_number, region_of
from ..states import Action
from .errors import Conflict, InvalidInput, NotFound

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NumberLoad:
    number: str
    region: str | None
    active_chats: int


def pool_entries() -> list[PoolEntry]:
    """Every proxy number with the count of active chats it carries."""
    loads = dict(
        db.session.execute(
            select(Chat.proxy_number, func.count()).where(Chat.status == "active").group_by(Chat.proxy_number)
        ).all()
    )
    numbers = db.session.scalars(select(ProxyNumber).order_by(ProxyNumber.number)).all()
    return [PoolEntry(p.number, p.region, int(loads.get(p.number, 0))) for p in numbers]


def list_numbers() -> list[NumberLoad]:
    return [NumberLoad(e.number, e.region, e.load) for e in pool_entries()]


def is_proxy_number(number: str) -> bool:
    return db.session.scalar(select(ProxyNumber.id).where(ProxyNumber.number == number)) is not None


def add_number(raw: str, default_region: str, actor: str | None = None) -> ProxyNumber:
    try:
        number = parse_number(raw, default_region)
    except InvalidNumber as exc:
        raise InvalidInput(f"{raw!r} is {exc}", field="number") from None
    if is_proxy_number(number):
        raise Conflict(f"{number} is already in the pool", field="number")
    entry = ProxyNumber(number=number, region=region_of(number))
    db.session.add(entry)
    audit.record(actor, Action.NUMBER_ADDED, detail=number)
    db.session.commit()
    log.info("proxy number %s added to the pool", mask_for_log(number))
    events.announce(events.numbers_changed)
    return entry


def remove_number(raw: str, default_region: str, actor: str | None = None) -> str:
    try:
        number = parse_number(raw, default_region)
    except InvalidNumber as exc:
        raise InvalidInput(f"{raw!r} is {exc}", field="number") from None
    entry = db.session.scalar(select(ProxyNumber).where(ProxyNumber.number == number))
    if entry is None:
        raise NotFound(f"{number} is not in the pool", field="number")
    active = db.session.scalar(
        select(func.count()).select_from(Chat).where(Chat.proxy_number == number, Chat.status == "active")
    )
    if active:
        raise Conflict(
            f"{number} is in use by {active} active chat{'' if active == 1 else 's'}: it can be removed once "
            f"{'it has' if active == 1 else 'they have'} ended",
            field="number",
        )
    db.session.delete(entry)
    audit.record(actor, Action.NUMBER_REMOVED, detail=number)
    db.session.commit()
    log.info("proxy number %s removed from the pool", mask_for_log(number))
    events.announce(events.numbers_changed)
    return number


def sync_pool(raw_numbers: Iterable[str], default_region: str) -> list[str]:
    """Add the configured numbers (PROXY_NUMBERS) that the pool lacks. Never removes any."""
    added = []
    existing = set(db.session.scalars(select(ProxyNumber.number)))
    for raw in raw_numbers:
        if not raw.strip():
            continue
        number = parse_number(raw, default_region)
        if number not in existing:
            db.session.add(ProxyNumber(number=number, region=region_of(number)))
            existing.add(number)
            added.append(number)
    db.session.commit()
    return added
