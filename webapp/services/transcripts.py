"""A chat's transcript as CSV, to hand to a customer-service case.

One header row, then one row per message in the order they were stored: time (ISO 8601, UTC), direction
(`inbound`/`outbound`), kind, side (the sender of an inbound text, the recipient of an outbound one), label
(that side's label, or "Party A"/"Party B"), text (as stored: the original of an inbound text, what was sent
for an outbound one, "(removed after N days)" once retention cleared it) and status. Each export is recorded
in the audit trail. A cell that a spreadsheet would run as a formula (starting with = + - @) is prefixed with
an apostrophe, as OWASP recommends for CSV exports.
"""

from __future__ import annotations

import csv
import io

from sqlalchemy import select

from .. import audit
from ..database import begin_write
from ..extensions import db
from ..models import Chat, Message
from ..states import Action
from .chats import get_chat

HEADER = ("time", "direction", "kind", "side", "label", "text", "status")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: str | None) -> str:
    value = value or ""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _label(chat: Chat, side: str | None) -> str:
    if side not in ("a", "b"):
        return ""
    return chat.label(side) or f"Party {side.upper()}"


def rows(chat: Chat) -> list[tuple[str, ...]]:
    messages = db.session.scalars(select(Message).where(Message.chat_id == chat.id).order_by(Message.id))
    return [
        (
            m.created_at.isoformat(),
            "inbound" if m.direction == "in" else "outbound",
            m.kind,
            m.side or "",
            _cell(_label(chat, m.side)),
            _cell(m.text),
            m.status,
        )
        for m in messages
    ]


def transcript_csv(chat_id: int, actor: str) -> tuple[Chat, str]:
    """(chat, CSV text) of chat `chat_id`; the export is recorded as done by `actor`."""
    begin_write()
    chat = get_chat(chat_id)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    body = rows(chat)
    writer.writerows(body)
    audit.record(actor, Action.TRANSCRIPT_EXPORTED, chat.id, f"{len(body)} message(s)")
    db.session.commit()
    return chat, out.getvalue()
