"""Read-only queries for the dashboard's pages: search, pagination, transcripts, unrouted texts, pool load.

Nothing here writes or commits; services own every change.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Select, func, or_, select

from .delivery_errors import Explanation, explain
from .extensions import db
from .models import Chat, HeldPart, Message, ProxyNumber, Route
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
        # a failed text that was resent is no longer a problem: its newer attempt speaks for it (the rows in
        # trouble are few per page, so the JSON check is done here rather than in two SQL dialects)
        failed.update(
            chat_id
            for chat_id, meta in db.session.execute(
                select(Message.chat_id, Message.meta).where(Message.chat_id.in_(ids), Message.status.in_(TROUBLE))
            )
            if not (meta or {}).get("resent_as")
        )
    return [ChatRow(c, last_by_chat.get(c.id), failed.get(c.id, 0)) for c in chats]


def count_chats(status: str) -> int:
    return db.session.scalar(select(func.count()).select_from(Chat).where(Chat.status == status)) or 0


@dataclass
class Attempt:
    """One try at delivering a transcript line's text: a send and what became of it."""

    number: int
    at: datetime | None
    status: str
    error: str | None
    then: str | None = None  # what followed: "retried", "resent" (by the outbox), "resent by maria"

    @property
    def then_text(self) -> str | None:
        """What followed, for people."""
        words = {"retried": "retried automatically", "resent": "no receipt came: sent again automatically"}
        return words.get(self.then or "", self.then)

    @property
    def explanation(self) -> Explanation | None:
        if self.status in SENT:
            return None
        return explain(self.error or (f"delivery {self.status}" if self.status in TROUBLE else None))


def _parse_time(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


@dataclass
class Entry:
    """One line of a transcript: a person's message (with its relay) or a message we sent, with every attempt.

    `chain` holds the outbound rows that carried this line's text, oldest first: the relays of an inbound text,
    or an outbound message and the copies a dispatcher's resends made of it. The newest is the one whose state
    the line shows; the others, and the earlier attempts each row keeps (meta.history, written by the outbox
    when it sends a row again), are the line's earlier attempts.
    """

    message: Message
    chain: list[Message] = field(default_factory=list)
    held = False

    @property
    def system(self) -> bool:
        return self.message.kind in SYSTEM_KINDS

    @property
    def side(self) -> str | None:
        return self.message.side

    @property
    def relay(self) -> Message | None:
        """The newest relay of an inbound text."""
        return self.chain[-1] if self.chain and self.message.direction == "in" else None

    @property
    def delivery(self) -> Message | None:
        """The outbound message whose delivery state this line shows (the newest attempt)."""
        if self.chain:
            return self.chain[-1]
        return None if self.message.direction == "in" else self.message

    @property
    def ids(self) -> list[int]:
        """Every message this line shows, so a live update of any of them refreshes it."""
        return list(dict.fromkeys([self.message.id, *(m.id for m in self.chain)]))

    @property
    def resendable(self) -> bool:
        """The delivery failed (or is unconfirmed) and was not resent yet: the operator may resend it."""
        d = self.delivery
        return d is not None and d.status in RESENDABLE and not (d.meta or {}).get("resent_as")

    @property
    def explanation(self) -> Explanation | None:
        """Why the newest attempt failed, in words (None unless it failed or is in doubt)."""
        d = self.delivery
        if d is None or d.status not in TROUBLE:
            return None
        return explain(d.error or f"delivery {d.status}")

    @property
    def attempts(self) -> list[Attempt]:
        """Every attempt, oldest first; the last one is the line's current state."""
        rows = self.chain or ([self.message] if self.message.direction == "out" else [])
        out: list[Attempt] = []
        for i, row in enumerate(rows):
            for h in (row.meta or {}).get("history") or []:
                if isinstance(h, dict):
                    out.append(Attempt(len(out) + 1, _parse_time(h.get("at")), str(h.get("status") or "failed"),
                                       h.get("error"), h.get("then")))
            then = None
            if i + 1 < len(rows):
                by = (rows[i + 1].meta or {}).get("requested_by")
                then = f"resent by {by}" if by else "resent"
            out.append(Attempt(len(out) + 1, row.updated_at, row.status, row.error, then))
        return out

    @property
    def earlier_attempts(self) -> list[Attempt]:
        return self.attempts[:-1]


@dataclass
class HeldSet:
    """A multipart text from a party whose parts are still arriving: held until all are in, or until
    MULTIPART_TIMEOUT_SECONDS after the first, then relayed with markers where parts are missing."""

    side: str
    concat_ref: str
    total: int
    parts: list[int]
    first_at: datetime
    held = True

    @property
    def key(self) -> str:
        """For the element's id: the side and the concat-ref, in characters an id may hold."""
        return f"{self.side}-" + "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in self.concat_ref)

    @property
    def missing(self) -> list[int]:
        have = set(self.parts)
        return [i for i in range(1, self.total + 1) if i not in have]

    def due(self, timeout_seconds: float) -> datetime:
        """When the flush job relays it as it is."""
        return self.first_at + timedelta(seconds=float(timeout_seconds))


def held_sets(chat: Chat) -> list[HeldSet]:
    """Multipart texts from the parties of an active chat whose parts are still arriving (by index)."""
    if chat.status != "active":
        return []
    rows = db.session.scalars(
        select(HeldPart)
        .where(
            HeldPart.sender.in_([chat.a_number, chat.b_number]),
            HeldPart.proxy_number == chat.proxy_number,
            HeldPart.message_id.is_(None),
        )
        .order_by(HeldPart.received_at, HeldPart.id)
    )
    sets: dict[tuple[str, str], HeldSet] = {}
    for p in rows:
        key = (p.sender, p.concat_ref)
        if key not in sets:
            side = "a" if p.sender == chat.a_number else "b"
            sets[key] = HeldSet(side, p.concat_ref, p.total, [], p.received_at)
        held = sets[key]
        held.total = max(held.total, p.total)
        if p.part not in held.parts:
            held.parts.append(p.part)
    for held in sets.values():
        held.parts.sort()
    return list(sets.values())


def transcript(chat_id: int) -> list[Entry | HeldSet]:
    """The chat as a conversation: inbound texts with the state of their relay, every message with all its
    attempts, notices set apart; multipart texts still arriving at the end."""
    messages = list(db.session.scalars(select(Message).where(Message.chat_id == chat_id).order_by(Message.id)))
    by_id = {m.id: m for m in messages}
    chains: dict[int, list[Message]] = {}
    root_of: dict[int, int] = {}
    shown_inside: set[int] = set()
    for m in messages:
        if m.direction != "out":
            continue
        if m.kind == "relay" and m.source_id in by_id:
            chains.setdefault(m.source_id, []).append(m)  # a relay and its resends: in its source's line
            shown_inside.add(m.id)
            continue
        previous = (m.meta or {}).get("resend_of")
        root = root_of.get(previous) if isinstance(previous, int) else None
        if root is not None:
            chains[root].append(m)  # a dispatcher's resend: in the line of the message it replaces
            root_of[m.id] = root
            shown_inside.add(m.id)
        else:
            chains[m.id] = [m]
            root_of[m.id] = m.id
    entries: list[Entry | HeldSet] = [
        Entry(m, chains.get(m.id, [])) for m in messages if m.id not in shown_inside
    ]
    chat = db.session.get(Chat, chat_id)
    if chat is not None:
        entries.extend(held_sets(chat))
    return entries


MAX_CHAIN = 50  # resends of one message followed at most (each is a dispatcher's click)


def entry_for(chat_id: int, message_id: int) -> Entry | None:
    """The transcript line that shows message `message_id` (a person's text, its relay, a notice, a resend)."""
    m = db.session.get(Message, message_id)
    if m is None or m.chat_id != chat_id:
        return None
    if m.kind == "relay" and m.source_id is not None:
        source = db.session.get(Message, m.source_id)
        if source is not None and source.chat_id == chat_id:
            m = source
    for _ in range(MAX_CHAIN):  # a resend copy: its line is the original's
        previous = (m.meta or {}).get("resend_of") if m.direction == "out" else None
        earlier = db.session.get(Message, previous) if isinstance(previous, int) else None
        if earlier is None or earlier.chat_id != chat_id:
            break
        m = earlier
    if m.direction == "in":
        chain = list(
            db.session.scalars(
                select(Message).where(Message.source_id == m.id, Message.kind == "relay").order_by(Message.id)
            )
        )
        return Entry(m, chain)
    chain = [m]
    while len(chain) < MAX_CHAIN:
        later = (chain[-1].meta or {}).get("resent_as")
        copy = db.session.get(Message, later) if isinstance(later, int) else None
        if copy is None or copy.chat_id != chat_id:
            break
        chain.append(copy)
    return Entry(m, chain)


@dataclass
class UnroutedRow:
    """One unrouted text as the Unrouted page shows it."""

    message: Message
    replied: bool  # the sender got an auto-reply
    chat: Chat | None  # the chat that last joined this sender and this proxy number (Message.last_chat_id)
    active: list[Chat]  # the sender's active chats now (on other numbers: they may have texted the wrong one)


def _unhandled():
    """The texts the nav badge counts; written as ix_messages_unhandled's condition so both databases use it."""
    return (Message.chat_id.is_(None), Message.handled_at.is_(None), Message.direction == "in")


def unrouted(page: int = 1, per_page: int = PER_PAGE, only_unhandled: bool = False) -> Page:
    """Texts that reached a proxy number from someone not in an active chat there, newest first, with the
    chat each belongs to and the sender's active chats (a few indexed lookups per page, by id)."""
    if only_unhandled:
        query = select(Message).where(*_unhandled()).order_by(Message.id.desc())
    else:
        query = (
            select(Message)
            .where(Message.direction == "in", Message.chat_id.is_(None))
            .order_by(Message.id.desc())
        )
    items, page, total = _paginate(query, page, per_page)
    replied: set[str] = set()
    chats: dict[int, Chat] = {}
    active: dict[str, list[Chat]] = {}
    if items:
        senders = {m.from_number for m in items}
        replied = set(
            db.session.scalars(
                select(Message.to_number).where(Message.kind == "auto_reply", Message.to_number.in_(senders))
            )
        )
        routes = db.session.execute(
            select(Route.real_number, Route.chat_id).where(Route.real_number.in_(senders))
        ).all()
        wanted = {m.last_chat_id for m in items if m.last_chat_id} | {chat_id for _n, chat_id in routes}
        if wanted:
            chats = {c.id: c for c in db.session.scalars(select(Chat).where(Chat.id.in_(wanted)))}
        for number, chat_id in sorted(routes, key=lambda r: -r[1]):
            if chat_id in chats:
                active.setdefault(number, []).append(chats[chat_id])
    rows = [
        UnroutedRow(
            m,
            m.from_number in replied,
            chats.get(m.last_chat_id) if m.last_chat_id else None,
            [c for c in active.get(m.from_number, []) if c.id != m.last_chat_id],
        )
        for m in items
    ]
    return Page(rows, page, per_page, total)


def count_unhandled_unrouted() -> int:
    """Unrouted texts no dispatcher has handled yet (the nav badge): counted in ix_messages_unhandled, whose
    size is the number of such texts, not the size of the messages table."""
    return db.session.scalar(select(func.count()).select_from(Message).where(*_unhandled())) or 0


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
        warnings.append("The pool is empty: no chat can be started until an admin adds a number.")
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
