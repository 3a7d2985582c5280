"""Search of chats, active and ended together, by label, reference, number, id and message text.

Every condition is answered from the search index (fulltext.py), never by scanning `chats` or `messages`:

- words (labels, reference, and what people and dispatchers wrote): every word of the query must start a word
  of the chat's labels and reference, or of one of its messages ("still com" finds "Are you still coming?");
  a one-character word must be a whole word;
- a query that is a phone number (digits, spaces, `+ - ( ) . /`, at least 3 digits) also finds chats whose
  numbers end with those digits: the full number in any format ("+44 7700 900123", "07700 900123") or its
  last digits ("0123");
- a query that is a whole number (`42`) also finds the chat with that id; `#42` finds only that chat.

Results put an exact reference (or `#id`) first, then active chats, then ended ones, newest activity first; each
knows its status, so the list can say which tab holds it. Each kind of match looks at its newest CAP (1,000)
chats or texts at most, so a common word costs no more than a rare one; the list then says "1,000+". Nothing
here logs the query: it may be someone's number.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Integer, String, select, text
from sqlalchemy.sql.elements import TextClause

from .extensions import db
from .fulltext import MESSAGE_ROWS, NUMBER_COLUMNS, PG_CHAT_WORDS, PG_MESSAGE_WORDS
from .models import Chat, Message, UTCDateTime
from .queries import PER_PAGE, ChatRow, Page, chat_rows

CAP = 1000  # chats looked at per kind of match (newest first); more than that: narrow the search
MAX_WORDS = 8
MAX_WORD = 40
_WORD = re.compile(r"[^\W_]+")
_PHONE = re.compile(r"[0-9\s+().\-/]+")  # ASCII digits only ("²".isdigit() is True)
_ID = re.compile(r"#?\s*([0-9]{1,9})")


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
    chat_id = _ID.fullmatch(q)
    if chat_id and q.startswith("#"):
        terms.chat_id = int(chat_id.group(1))  # "#42" is chat 42 and nothing else
        return terms
    words = [w.lower()[:MAX_WORD] for w in _WORD.findall(q)]
    terms.words = list(dict.fromkeys(words))[:MAX_WORDS]
    if _PHONE.fullmatch(q):
        digits = "".join(ch for ch in q if ch in "0123456789")
        if len(digits) >= 3:
            terms.suffixes.append(digits)
            core = digits.lstrip("0")  # national ("07700 900123") or international ("0044 ...") prefix
            if digits.startswith("0") and len(digits) >= 8 and len(core) >= 3:
                terms.suffixes.append(core)
    if chat_id:
        terms.chat_id = int(chat_id.group(1))
    return terms


@dataclass
class SearchRow(ChatRow):
    hit: Message | None = None  # the newest of its messages that matched, if the chat matched by text


@dataclass
class SearchPage(Page):
    active: int = 0
    ended: int = 0
    capped: bool = False  # more chats match than were looked at (CAP): the counts are "at least"


# A word of one character is matched whole ("ride-4" is ride-4, not ride-40...): as a prefix it would expand to
# most of the vocabulary.
def _fts(terms: Terms) -> str:
    return " AND ".join(f'"{w}"' if len(w) == 1 else f'"{w}"*' for w in terms.words)


def _tsquery(terms: Terms) -> str:
    return " & ".join(w if len(w) == 1 else f"{w}:*" for w in terms.words)


def _candidates(terms: Terms, dialect: str) -> tuple[str, dict[str, Any]]:
    """SQL for the matching chats, rows of (chat id, which lookup found it): a UNION ALL of index lookups,
    each the newest CAP at most (so a common word, "the", does not cost the size of the history); and its
    parameters."""
    parts: list[str] = []
    params: dict[str, Any] = {"cap": CAP}
    if terms.words:
        if dialect == "sqlite":
            params["fts"] = _fts(terms)
            parts.append(
                "SELECT rowid AS id FROM search_chat_words WHERE search_chat_words MATCH :fts "
                "ORDER BY rowid DESC LIMIT :cap"
            )
            parts.append(
                "SELECT m.chat_id AS id FROM (SELECT rowid AS mid FROM search_messages "
                "WHERE search_messages MATCH :fts ORDER BY rowid DESC LIMIT :cap) AS hit "
                "JOIN messages m ON m.id = hit.mid"
            )
        else:
            params["tsq"] = _tsquery(terms)
            parts.append(
                f"SELECT id FROM chats WHERE {PG_CHAT_WORDS} @@ to_tsquery('simple'::regconfig, :tsq) "
                "ORDER BY id DESC LIMIT :cap"
            )
            parts.append(
                f"SELECT chat_id AS id FROM messages WHERE {MESSAGE_ROWS} "
                f"AND {PG_MESSAGE_WORDS} @@ to_tsquery('simple'::regconfig, :tsq) ORDER BY messages.id DESC LIMIT :cap"
            )
    for i, digits in enumerate(terms.suffixes):
        for column in NUMBER_COLUMNS:
            if dialect == "sqlite":
                params[f"s{i}"], params[f"t{i}"] = "%" + digits, digits[-3:]
                parts.append(
                    f"SELECT id FROM chats WHERE substr({column}, -3) = :t{i} AND {column} LIKE :s{i} "
                    "ORDER BY id DESC LIMIT :cap"
                )
            else:
                params[f"s{i}"] = digits[::-1] + "%"
                parts.append(f"SELECT id FROM chats WHERE reverse({column}) LIKE :s{i} ORDER BY id DESC LIMIT :cap")
    if terms.chat_id is not None:
        params["chat_id"] = terms.chat_id
        parts.append("SELECT id FROM chats WHERE id = :chat_id")
    # each part in a subquery of its own (a member of a UNION cannot have its own ORDER BY / LIMIT), numbered,
    # so the caller can tell a part that met the cap
    sql = " UNION ALL ".join(f"SELECT id, {n} AS part FROM ({part}) AS p{n}" for n, part in enumerate(parts))
    return sql, {name: value for name, value in params.items() if f":{name}" in sql}


def _hits(terms: Terms, chat_ids: list[int], dialect: str) -> dict[int, Message]:
    """The newest matching message of each of these chats (for the rows that matched by text)."""
    if not terms.words or not chat_ids:
        return {}
    ids = ", ".join(str(int(i)) for i in chat_ids)
    if dialect == "sqlite":
        sql = text(
            "SELECT max(m.id) FROM (SELECT rowid AS mid FROM search_messages WHERE search_messages MATCH :fts "
            f"ORDER BY rowid DESC LIMIT :cap) AS hit JOIN messages m ON m.id = hit.mid WHERE m.chat_id IN ({ids}) "
            "GROUP BY m.chat_id"
        ).bindparams(fts=_fts(terms), cap=CAP)
    else:
        sql = text(
            f"SELECT max(id) FROM messages WHERE chat_id IN ({ids}) AND {MESSAGE_ROWS} "
            f"AND {PG_MESSAGE_WORDS} @@ to_tsquery('simple'::regconfig, :tsq) GROUP BY chat_id"
        ).bindparams(tsq=_tsquery(terms))
    found = [i for i in db.session.scalars(sql) if i is not None]
    if not found:
        return {}
    return {m.chat_id: m for m in db.session.scalars(select(Message).where(Message.id.in_(found)))}


def _by_ids(dialect: str) -> TextClause:
    """What ordering needs of a list of chats, the list as one parameter (a JSON array on SQLite, an array on
    PostgreSQL): binding a thousand ids one by one costs more than the lookups."""
    where = "id IN (SELECT value FROM json_each(:ids))" if dialect == "sqlite" else "id = ANY(:ids)"
    return text(f"SELECT id, status, last_activity_at, reference FROM chats WHERE {where}").columns(
        id=Integer, status=String, last_activity_at=UTCDateTime, reference=String
    )


def find_chats(q: str, page: int = 1, per_page: int = PER_PAGE) -> SearchPage:
    """One page of the chats matching `q`: an exact reference or id first, then active chats, then ended ones,
    newest activity first; with how many matched in each status."""
    terms = parse(q)
    if not terms:
        return SearchPage([], 1, per_page, 0)
    dialect = db.session.get_bind().dialect.name
    sql, params = _candidates(terms, dialect)
    # the lookups alone first (each answered from its index), then the few thousand chats they found at most,
    # by primary key: a join would let the planner scan `chats` instead
    lookups = db.session.execute(text(sql).bindparams(**params).columns(id=Integer, part=Integer)).all()
    per_part = Counter(row.part for row in lookups)
    capped = any(count >= CAP for count in per_part.values())
    ids = sorted({row.id for row in lookups if row.id is not None})
    found = db.session.execute(_by_ids(dialect), {"ids": json.dumps(ids) if dialect == "sqlite" else ids}).all()
    wanted_ref = q.strip().lower()
    chats_found = {row.id: row for row in found}
    ordered = sorted(
        chats_found.values(),
        key=lambda r: (
            0 if r.id == terms.chat_id or (r.reference or "").lower() == wanted_ref else 1,
            0 if r.status == "active" else 1,
            -r.last_activity_at.timestamp(),
            -r.id,
        ),
    )
    total = len(ordered)
    active = sum(1 for r in ordered if r.status == "active")
    pages = max(1, -(-total // per_page))
    page = min(max(page, 1), pages)
    wanted = [r.id for r in ordered[(page - 1) * per_page : page * per_page]]
    by_id = {c.id: c for c in db.session.scalars(select(Chat).where(Chat.id.in_(wanted)))} if wanted else {}
    chats = [by_id[i] for i in wanted if i in by_id]
    hits = _hits(terms, wanted, dialect)
    rows = [SearchRow(r.chat, r.last, r.failed, hits.get(r.chat.id)) for r in chat_rows(chats)]
    return SearchPage(rows, page, per_page, total, active=active, ended=total - active, capped=capped)
