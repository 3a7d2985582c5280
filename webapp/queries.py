"""Read-only queries for the dashboard's pages: search, pagination, transcripts, unrouted texts, pool load.

Nothing here writes or commits; services own every change.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Select, func, or_, select

from .extensions import db
from .models import Chat, Message, ProxyNumber, Route
from .states import RESENDABLE, SENT, SYSTEM_KINDS, TROUBLE

PER_PAGE = 20


@dataclass
class Page:
    items: list
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


@dataclass
class ChatRow:
    chat: Chat
    last: Message | None
    failed: int  # outbound messages to this chat's parties that could not be delivered


def _paginate(query: Select, page: int, per_page: int) -> tuple[list, int, int]:
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    pages = max(1, math.ceil(total / per_page))
    page = min(max(page, 1), pages)
    items = list(db.session.scalars(query.limit(per_page).offset((page - 1) * per_page)))
    return items, page, total


def search_chats(status: str = "active", page: int = 1, per_page: int = PER_PAGE) -> Page:
    """One page of chats in `status`, newest activity first. Searching is search.find_chats (an index)."""
    query = select(Chat).where(Chat.status == status).order_by(Chat.last_activity_at.desc(), Chat.id.desc())
    chats, page, total = _paginate(query, page, per_page)
    return Page(chat_rows(chats), page, per_page, total)


def chat_rows(chats: list[Chat]) -> list[ChatRow]:
    """The chats as list rows: each with its latest message and how many deliveries failed."""
    ids = [c.id for c in chats]
    last_by_chat: dict[int, Message] = {}
    failed: Counter[int] = Counter()
    if ids:
        # the latest message a person wrote, or else the latest notice
        latest = (
            select(func.max(Message.id))
            .where(Message.chat_id.in_(ids), or_(Message.direction == "in", Message.kind != "relay"))
            .group_by(Message.chat_id)
        )
        for m in db.session.scalars(select(Message).where(Message.id.in_(latest))):
            last_by_chat[m.chat_id] = m
        failed.update(
            dict(
                db.session.execute(
                    select(Message.chat_id, func.count())
                    .where(Message.chat_id.in_(ids), Message.status.in_(TROUBLE))
                    .group_by(Message.chat_id)
                ).all()
            )
        )
    return [ChatRow(c, last_by_chat.get(c.id), failed.get(c.id, 0)) for c in chats]


def count_chats(status: str) -> int:
    return db.session.scalar(select(func.count()).select_from(Chat).where(Chat.status == status)) or 0


@dataclass
class Entry:
    """One line of a transcript: a person's message (with its relay) or a system message."""

    message: Message
    relay: Message | None = None

    @property
    def system(self) -> bool:
        return self.message.kind in SYSTEM_KINDS

    @property
    def side(self) -> str | None:
        return self.message.side

    @property
    def resendable(self) -> bool:
        """The delivery failed (or is unconfirmed) and was not resent yet: the operator may resend it."""
        d = self.delivery
        return d is not None and d.status in RESENDABLE and not (d.meta or {}).get("resent_as")

    @property
    def delivery(self) -> Message | None:
        """The outbound message whose delivery state this line shows."""
        return self.relay if self.message.direction == "in" else self.message


def transcript(chat_id: int) -> list[Entry]:
    """The chat as a conversation: inbound texts with the state of their relay; notices set apart."""
    messages = list(db.session.scalars(select(Message).where(Message.chat_id == chat_id).order_by(Message.id)))
    # the newest attempt wins: a resent relay replaces the failed one in its source's line
    relays = {m.source_id: m for m in messages if m.kind == "relay" and m.source_id is not None}
    entries = []
    for m in messages:
        if m.kind == "relay" and m.source_id in relays:
            continue  # shown inside the line of the message it relays
        entries.append(Entry(m, relays.get(m.id) if m.direction == "in" else None))
    return entries


def entry_for(chat_id: int, message_id: int) -> Entry | None:
    """The transcript line that shows message `message_id` (a person's text, its relay, or a notice)."""
    m = db.session.get(Message, message_id)
    if m is None or m.chat_id != chat_id:
        return None
    if m.kind == "relay" and m.source_id is not None:
        source = db.session.get(Message, m.source_id)
        if source is not None:
            m = source
    relay = None
    if m.direction == "in":
        relay = db.session.scalar(
            select(Message)
            .where(Message.source_id == m.id, Message.kind == "relay")
            .order_by(Message.id.desc())
            .limit(1)
        )
    return Entry(m, relay)


def unrouted(page: int = 1, per_page: int = PER_PAGE) -> Page:
    """Texts that reached a proxy number from someone not in an active chat there, newest first."""
    query = (
        select(Message)
        .where(Message.direction == "in", Message.chat_id.is_(None))
        .order_by(Message.id.desc())
    )
    items, page, total = _paginate(query, page, per_page)
    replied = set()
    if items:
        senders = {m.from_number for m in items}
        replied = set(
            db.session.scalars(
                select(Message.to_number).where(Message.kind == "auto_reply", Message.to_number.in_(senders))
            )
        )
    return Page([(m, m.from_number in replied) for m in items], page, per_page, total)


def count_unrouted_since(since: datetime) -> int:
    return (
        db.session.scalar(
            select(func.count())
            .select_from(Message)
            .where(Message.direction == "in", Message.chat_id.is_(None), Message.created_at >= since)
        )
        or 0
    )


@dataclass
class PoolLoad:
    numbers: list[tuple[ProxyNumber, int]]
    active_chats: int
    busiest_person_chats: int  # most active chats any one person is in
    headroom: int  # free numbers left for that person: 0 means they cannot be paired again
    warnings: list[str] = field(default_factory=list)


def pool_load() -> PoolLoad:
    """The pool, the active chats each number carries, and how close pairing is to running out.

    A number can carry any number of chats, but one person can be in only one active chat per number,
    so capacity runs out per person: someone in as many chats as there are numbers cannot be paired again.
    """
    loads = dict(
        db.session.execute(
            select(Chat.proxy_number, func.count()).where(Chat.status == "active").group_by(Chat.proxy_number)
        ).all()
    )
    numbers = list(db.session.scalars(select(ProxyNumber).order_by(ProxyNumber.number)))
    busiest = db.session.scalar(
        select(func.count()).select_from(Route).group_by(Route.real_number).order_by(func.count().desc()).limit(1)
    ) or 0
    headroom = len(numbers) - busiest
    warnings = []
    if not numbers:
        warnings.append("The pool is empty: no chat can be started. Add numbers with `flask numbers add`.")
    elif headroom <= 0:
        warnings.append(
            "Someone is already in a chat on every number: they cannot be paired again "
            "until a chat ends or numbers are added."
        )
    elif headroom == 1:
        warnings.append(
            "Free capacity is low: one person is in chats on all but one number. "
            "Add numbers to the pool before they run out."
        )
    active = sum(loads.values())
    return PoolLoad([(n, int(loads.get(n.number, 0))) for n in numbers], active, busiest, headroom, warnings)


def handset_messages(number: str, limit: int = 50) -> list[Message]:
    """What one (simulated) phone has seen: texts it sent to our numbers and texts our numbers sent it."""
    query = (
        select(Message)
        .where(
            or_(
                Message.from_number == number,
                (Message.to_number == number) & (Message.direction == "out") & Message.status.in_(SENT),
            )
        )
        .order_by(Message.id.desc())
        .limit(limit)
    )
    return list(reversed(list(db.session.scalars(query))))


def proxies_of(number: str) -> list[str]:
    """Proxy numbers this person is in an active chat on (most recent chat first)."""
    return list(
        db.session.scalars(
            select(Route.proxy_number).where(Route.real_number == number).order_by(Route.id.desc())
        )
    )


def chats_by_proxy(number: str) -> dict[str, Chat]:
    """The active chats this person is in, by the proxy number each runs on (one per number, by constraint)."""
    rows = db.session.execute(
        select(Route.proxy_number, Chat).join(Chat, Chat.id == Route.chat_id).where(Route.real_number == number)
    ).all()
    return {proxy: chat for proxy, chat in rows}


def pool_numbers() -> list[str]:
    return list(db.session.scalars(select(ProxyNumber.number).order_by(ProxyNumber.number)))
