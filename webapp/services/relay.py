"""The webhook's hot path: a text from a party of an active chat, stored with its relay in a few statements.

Most inbound webhooks are exactly this case, and the ORM unit of work cost ~4x the CPU of the rows it wrote
(bench/ingest_profile.py). So the common case runs prebuilt Core statements, and on SQLite concurrent webhooks
share one transaction (a group commit, groupcommit.py), so a burst costs one commit, not one per text, and
each webhook still answers only once its text is durable. For a batch of texts:

1. the routing SELECT per distinct (sender, proxy number); on PostgreSQL it locks the chat row (`FOR NO KEY
   UPDATE OF chats`), so an ending chat cannot slip between routing and relay (SQLite's writer lock already
   holds them);
2. one INSERT of the inbound rows, deduplicated by `ON CONFLICT (provider_id) DO NOTHING RETURNING id,
   provider_id` (a messageId seen before, or twice in the batch, returns no row: a duplicate);
3. the relays and their lanes through the outbox's writer (`outbox.queue_rows`), in arrival order;
4. one activity UPDATE per chat (`unread = unread + n`).

Everything else (strangers, STOP/START, empty texts, multipart sets) goes through the general path in
inbound.py, as does a text whose route is missing here. The activity UPDATE also moves the chat's idle deadline.

With REDACT_CONTACTS on, the relay carries the text with phone numbers and e-mail addresses replaced, the
inbound row keeps the original, and both record what was removed in `meta.redacted`; with it off (the
default) the path does no more work than before. On PostgreSQL each webhook keeps its own transaction: concurrent
transactions run in parallel there, and PostgreSQL already flushes their commits together.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..callbacks import record
from ..database import begin_write
from ..extensions import db
from ..groupcommit import GroupCommit
from ..models import Chat, Message, Route, utcnow
from ..outbox import queue_rows
from ..proxy import Redaction, is_keyword, redact_contacts, region_of
from ..states import Direction, Kind, Status

MAX_BATCH = 100


@dataclass(frozen=True)
class Statements:
    route: Any
    inbound: Any
    touch: Any


_BUILT: dict[str, Statements] = {}


def _statements(dialect: str) -> Statements:
    if dialect not in _BUILT:
        m, c, r = Message.__table__, Chat.__table__, Route.__table__
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        _BUILT[dialect] = Statements(
            route=select(c.c.id, c.c.a_number, c.c.b_number, c.c.idle_timeout, c.c.a_label, c.c.b_label,
                         c.c.reference, c.c.proxy_number)
            .join(r, r.c.chat_id == c.c.id)
            .where(r.c.real_number == bindparam("sender"), r.c.proxy_number == bindparam("proxy"))
            # NO KEY UPDATE: serialises the texts of one chat, yet lets other transactions insert or
            # update rows that merely reference the chat (their foreign-key check takes KEY SHARE), so a
            # settle holding a lane never waits on a webhook holding the chat (docs/database.md)
            .with_for_update(of=c, key_share=True),
            inbound=insert(m)
            .on_conflict_do_nothing(index_elements=["provider_id"])
            .returning(m.c.id, m.c.provider_id),
            touch=update(c)
            .where(c.c.id == bindparam("cid"))
            .values(
                last_activity_at=bindparam("now"), unread=c.c.unread + bindparam("n"), idle_at=bindparam("idle_at")
            ),
        )
    return _BUILT[dialect]


@dataclass(frozen=True)
class Text:
    """A routed-looking text on its way to storage."""

    sender: str
    proxy: str
    text: str
    provider_id: str | None


@dataclass(frozen=True)
class FastResult:
    """`message_id` None means the messageId was already stored: a duplicate."""

    message_id: int | None
    chat_id: int


def relayable(text: str) -> bool:
    """Whether a whole (not multipart) text can take the hot path at all (not empty, not STOP or START)."""
    return bool(text.strip()) and not is_keyword(text)


def redaction(text: str, sender: str, default_region: str) -> Redaction | None:
    """The text with contact details removed, or None when it has none (REDACT_CONTACTS)."""
    found = redact_contacts(text, region_of(sender) or default_region)
    return found if found.changed else None


def _execute_rows(conn: Connection, statement: Any, rows: list[dict[str, Any]]) -> list[Any]:
    """`statement` for every row, in order: one executemany when the rows have the same columns, else one by one.
    Returns the RETURNING rows, if any."""
    if len({frozenset(row) for row in rows}) == 1:
        result = conn.execute(statement, rows)
        return list(result) if result.returns_rows else []
    out: list[Any] = []
    for row in rows:
        result = conn.execute(statement, row)
        if result.returns_rows:
            out.extend(result)
    return out


def try_relay(sender: str, proxy: str, text: str, provider_id: str | None) -> FastResult | None:
    """Store a routed text and queue its relay, committed; None when it needs the general path (nothing written).

    The caller checked `relayable(text)`. Raises what storing raised (DatabaseBusy included)."""
    item = Text(sender, proxy, text, provider_id)
    if db.session.get_bind().dialect.name == "sqlite":
        return _committer().submit(item)
    [outcome] = store_batch([item])
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _committer() -> GroupCommit[Text, FastResult | None]:
    """The app's group commit (one per app: a batch is written in its leader's app context, on its database)."""
    ext = current_app.extensions
    group = ext.get("relay_group_commit")
    if group is None:
        group = ext.setdefault("relay_group_commit", GroupCommit(store_batch, MAX_BATCH))
    return group


def store_batch(items: list[Text]) -> list[FastResult | BaseException | None]:
    """Write `items` in one transaction and commit; if that fails, each alone (one bad text fails only itself)."""
    try:
        begin_write()
        outcomes: list[FastResult | BaseException | None] = list(_write(db.session.connection(), items))
        db.session.commit()
        return outcomes
    except BaseException as exc:
        db.session.rollback()
        if len(items) == 1:
            return [exc]
    outcomes = []
    for item in items:
        try:
            begin_write()
            [result] = _write(db.session.connection(), [item])
            db.session.commit()
            outcomes.append(result)
        except BaseException as exc:
            db.session.rollback()
            outcomes.append(exc)
    return outcomes


def _write(conn: Connection, items: list[Text]) -> list[FastResult | None]:
    st = _statements(conn.dialect.name)
    routes: dict[tuple[str, str], Any] = {}
    for item in items:
        key = (item.sender, item.proxy)
        if key not in routes:
            routes[key] = conn.execute(st.route, {"sender": item.sender, "proxy": item.proxy}).first()
    now = utcnow()
    rows: list[dict[str, Any] | None] = []  # the inbound row of each item, None when not routed here
    for item in items:
        route = routes[(item.sender, item.proxy)]
        rows.append(None if route is None else {
            "direction": Direction.IN, "kind": Kind.SMS, "side": "a" if route.a_number == item.sender else "b",
            "chat_id": route.id, "from_number": item.sender, "to_number": item.proxy, "text": item.text,
            "status": Status.RECEIVED, "provider_id": item.provider_id, "attempts": 0,
            "created_at": now, "updated_at": now,
        })
    cfg = current_app.config
    redacted: dict[int, Redaction] = {}  # index of the item -> what its relay carries instead
    if cfg["REDACT_CONTACTS"]:
        for i, (item, row) in enumerate(zip(items, rows)):
            if row is not None and (found := redaction(item.text, item.sender, cfg["DEFAULT_REGION"])):
                redacted[i] = found
                row["meta"] = {"redacted": list(found.found)}
    keyed = [row for row in rows if row is not None and row["provider_id"] is not None]
    ids: dict[str, int] = {pid: mid for mid, pid in _execute_rows(conn, st.inbound, keyed)} if keyed else {}
    results: list[FastResult | None] = []
    relays: list[dict[str, Any]] = []
    unread: Counter[int] = Counter()
    taken: set[str] = set()
    idle: dict[int, Any] = {}
    received: list[tuple[Any, int, str, str]] = []  # (route, message id, side, text): the backend's events
    for i, (item, row) in enumerate(zip(items, rows)):
        route = routes[(item.sender, item.proxy)]
        if row is None:
            results.append(None)  # not routed here: the general path decides (a stranger, a chat just ended)
            continue
        if item.provider_id is None:  # no messageId: nothing to deduplicate on, stored as it comes
            message_id = conn.execute(st.inbound, row).first()[0]
        elif item.provider_id in ids and item.provider_id not in taken:
            taken.add(item.provider_id)  # the first of a messageId in this batch is the one stored
            message_id = ids[item.provider_id]
        else:
            results.append(FastResult(None, route.id))  # stored before, or earlier in this batch
            continue
        a_sent = route.a_number == item.sender
        relay = {
            "kind": Kind.RELAY, "side": "b" if a_sent else "a", "chat_id": route.id, "from_number": item.proxy,
            "to_number": route.b_number if a_sent else route.a_number, "text": item.text, "source_id": message_id,
            "attempts": 0, "next_attempt_at": now, "created_at": now, "updated_at": now,
        }
        if i in redacted:
            relay.update(text=redacted[i].text, meta={"redacted": list(redacted[i].found)})
        relays.append(relay)
        unread[route.id] += 1
        idle[route.id] = now + timedelta(seconds=route.idle_timeout) if route.idle_timeout else None
        received.append((route, message_id, "a" if a_sent else "b", item.text))
        results.append(FastResult(message_id, route.id))
    if relays:
        queue_rows(conn, relays)
        conn.execute(st.touch, [{"cid": cid, "now": now, "n": n, "idle_at": idle[cid]} for cid, n in unread.items()])
    for route, message_id, side, text in received:  # last writes of the transaction (callbacks/record.py)
        record.message_received(route, message_id, side, text, now)
    return results
