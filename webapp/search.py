"""Search of chats, active and ended together, by label, reference, number, id and message text.

Every condition is answered from the search index (fulltext.py), never by scanning `chats` or `messages`:

- words (labels, reference, and what people and dispatchers wrote): every word of the query must start a word
  of the chat's labels and reference, or of one of its messages ("still com" finds "Are you still coming?");
- a query that is a phone number (digits, spaces, `+ - ( ) . /`, at least 3 digits) also finds chats whose
  numbers end with those digits: the full number in any format ("+44 7700 900123", "07700 900123") or its
  last digits ("0123");
- a query that is a whole number (`42`) also finds the chat with that id; `#42` finds only that chat.

Results put active chats first, then ended ones, newest activity first; each knows its status, so the list
can say which tab holds it. Nothing here logs the query: it may be someone's number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Integer, case, func, select, text
from sqlalchemy.sql.elements import TextClause

from .extensions import db
from .fulltext import MESSAGE_ROWS, PG_CHAT_WORDS, PG_MESSAGE_WORDS
from .models import Chat, Message
from .queries import PER_PAGE, ChatRow, Page, chat_rows

MAX_WORDS = 8
MAX_WORD = 40
_WORD = re.compile(r"[^\W_]+")
_PHONE = re.compile(r"[\d\s+().\-/]+")


@dataclass
class Terms:
    """What a query asks for, parsed once."""

    words: list[str] = field(default_factory=list)
    suffixes: list[str] = field(default_factory=list)  # digits a chat's number may end with
    chat_id: int | None = None

    def __bool__(self) -> bool:
        return bool(self.words or self.suffixes or self.chat_id is not None)


def parse(q: str) -> Terms:
    q = (q or "").strip()
    terms = Terms()
    if q.startswith("#") and q[1:].strip().isdigit() and len(q[1:].strip()) <= 9:
        terms.chat_id = int(q[1:].strip())  # "#42" is chat 42 and nothing else
        return terms
    # words of two characters or more: a one-letter prefix would expand to most of the vocabulary
    words = [w.lower()[:MAX_WORD] for w in _WORD.findall(q) if len(w) >= 2]
    terms.words = list(dict.fromkeys(words))[:MAX_WORDS]
    if _PHONE.fullmatch(q):
        digits = "".join(ch for ch in q if ch.isdigit())
        if len(digits) >= 3:
            terms.suffixes.append(digits)
            core = digits.lstrip("0")  # national ("07700 900123") or international ("0044 ...") prefix
            if digits.startswith("0") and len(digits) >= 8 and len(core) >= 3:
                terms.suffixes.append(core)
    if q.isdigit() and len(q) <= 9:
        terms.chat_id = int(q)
    return terms


@dataclass
class SearchRow(ChatRow):
    hit: Message | None = None  # the newest of its messages that matched, if the chat matched by text


@dataclass
class SearchPage(Page):
    active: int = 0
    ended: int = 0


def _candidates(terms: Terms, dialect: str) -> tuple[str, dict[str, Any]]:
    """SQL for the ids of matching chats (a UNION of index lookups) and its parameters."""
    parts: list[str] = []
    params: dict[str, Any] = {}
    if terms.words:
        if dialect == "sqlite":
            params["fts"] = " AND ".join(f'"{w}"*' for w in terms.words)
            parts.append("SELECT rowid AS id FROM search_chat_words WHERE search_chat_words MATCH :fts")
            parts.append(
                "SELECT m.chat_id AS id FROM search_messages JOIN messages m ON m.id = search_messages.rowid "
                "WHERE search_messages MATCH :fts"
            )
        else:
            params["tsq"] = " & ".join(f"{w}:*" for w in terms.words)
            parts.append(f"SELECT id FROM chats WHERE {PG_CHAT_WORDS} @@ to_tsquery('simple'::regconfig, :tsq)")
            parts.append(
                f"SELECT chat_id AS id FROM messages WHERE {MESSAGE_ROWS} "
                f"AND {PG_MESSAGE_WORDS} @@ to_tsquery('simple'::regconfig, :tsq)"
            )
    for i, digits in enumerate(terms.suffixes):
        for column in ("a_number", "b_number", "proxy_number"):
            if dialect == "sqlite":
                params[f"s{i}"] = "%" + digits
                parts.append(f"SELECT rowid AS id FROM search_chat_numbers WHERE {column} LIKE :s{i}")
            else:
                params[f"s{i}"] = digits[::-1] + "%"
                parts.append(f"SELECT id FROM chats WHERE reverse({column}) LIKE :s{i}")
    if terms.chat_id is not None:
        params["chat_id"] = terms.chat_id
        parts.append("SELECT id FROM chats WHERE id = :chat_id")
    return " UNION ".join(parts), params


def _hits(terms: Terms, chat_ids: list[int], dialect: str) -> dict[int, Message]:
    """The newest matching message of each of these chats (for the rows that matched by text)."""
    if not terms.words or not chat_ids:
        return {}
    ids = ", ".join(str(int(i)) for i in chat_ids)
    if dialect == "sqlite":
        sql = text(
            "SELECT max(m.id) FROM search_messages JOIN messages m ON m.id = search_messages.rowid "
            f"WHERE search_messages MATCH :fts AND m.chat_id IN ({ids}) GROUP BY m.chat_id"
        ).bindparams(fts=" AND ".join(f'"{w}"*' for w in terms.words))
    else:
        sql = text(
            f"SELECT max(id) FROM messages WHERE chat_id IN ({ids}) AND {MESSAGE_ROWS} "
            f"AND {PG_MESSAGE_WORDS} @@ to_tsquery('simple'::regconfig, :tsq) GROUP BY chat_id"
        ).bindparams(tsq=" & ".join(f"{w}:*" for w in terms.words))
    found = [i for i in db.session.scalars(sql) if i is not None]
    if not found:
        return {}
    return {m.chat_id: m for m in db.session.scalars(select(Message).where(Message.id.in_(found)))}


def find_chats(q: str, page: int = 1, per_page: int = PER_PAGE) -> SearchPage:
    """One page of the chats matching `q`, active ones first, with how many matched in each status."""
    terms = parse(q)
    if not terms:
        return SearchPage([], 1, per_page, 0)
    dialect = db.session.get_bind().dialect.name
    sql, params = _candidates(terms, dialect)
    matching: TextClause = text(sql).bindparams(**params)
    ids = select(matching.columns(id=Integer).subquery().c.id)
    counts = dict(
        db.session.execute(select(Chat.status, func.count()).where(Chat.id.in_(ids)).group_by(Chat.status)).all()
    )
    total = sum(counts.values())
    pages = max(1, -(-total // per_page))
    page = min(max(page, 1), pages)
    chats = list(
        db.session.scalars(
            select(Chat)
            .where(Chat.id.in_(ids))
            .order_by(case((Chat.status == "active", 0), else_=1), Chat.last_activity_at.desc(), Chat.id.desc())
            .limit(per_page)
            .offset((page - 1) * per_page)
        )
    )
    hits = _hits(terms, [c.id for c in chats], dialect)
    rows = [SearchRow(r.chat, r.last, r.failed, hits.get(r.chat.id)) for r in chat_rows(chats)]
    return SearchPage(
        rows, page, per_page, total, active=int(counts.get("active", 0)), ended=int(counts.get("ended", 0))
    )
