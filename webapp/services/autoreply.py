"""Auto-replies cost money and go to numbers nobody vetted: who may get one, and how many may go out.

- only numbers in AUTO_REPLY_COUNTRIES (default: the countries of the pool's numbers), and never to
  premium-rate, shared-cost, toll-free and other service numbers;
- at most AUTO_REPLY_MAX_PER_HOUR in any 60 minutes, all senders together (a partial index counts them);
- at most one per sender per AUTO_REPLY_INTERVAL (as before).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import phonenumbers
from sqlalchemy import func, select
from sqlalchemy import text as text_sql

from ..extensions import db
from ..models import Message, ProxyNumber, utcnow
from ..proxy import mask_for_log, region_of
from ..states import Kind

log = logging.getLogger(__name__)

# Number types an unsolicited SMS of ours must never go to (phonenumbers.PhoneNumberType).
REFUSED_TYPES = frozenset(
    {
        phonenumbers.PhoneNumberType.PREMIUM_RATE,
        phonenumbers.PhoneNumberType.SHARED_COST,
        phonenumbers.PhoneNumberType.TOLL_FREE,
        phonenumbers.PhoneNumberType.UAN,
        phonenumbers.PhoneNumberType.PERSONAL_NUMBER,
        phonenumbers.PhoneNumberType.PAGER,
        phonenumbers.PhoneNumberType.VOICEMAIL,
    }
)
_LOCK_KEY = 0x61757472  # "autr": PostgreSQL advisory lock that serialises the cap's count-then-insert
_last_cap_warning = 0.0


def countries(cfg: Mapping[str, Any]) -> set[str]:
    """The ISO regions auto-replies may go to."""
    configured = {c.strip().upper() for c in str(cfg.get("AUTO_REPLY_COUNTRIES") or "").split(",") if c.strip()}
    if configured:
        return configured
    return {r for r in db.session.scalars(select(ProxyNumber.region).distinct()) if r}


def refusal(number: str, allowed: set[str]) -> str | None:
    """Why `number` must not get an auto-reply (words for the log), or None. Pure."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return "not a phone number"
    if phonenumbers.number_type(parsed) in REFUSED_TYPES:
        return "a premium-rate or service number"
    region = region_of(number)
    if region is None or region not in allowed:
        return f"outside AUTO_REPLY_COUNTRIES ({region or 'no country'})"
    return None


def may_auto_reply(sender: str, cfg: Mapping[str, Any]) -> bool:
    """Whether an auto-reply to `sender` may be queued now, inside the caller's write transaction."""
    why = refusal(sender, countries(cfg))
    if why is not None:
        log.info("no auto-reply to %s: %s", mask_for_log(sender), why)
        return False
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text_sql("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    now = utcnow()
    recent = db.session.scalar(
        select(Message.id)
        .where(
            Message.kind == Kind.AUTO_REPLY,
            Message.to_number == sender,
            Message.created_at >= now - timedelta(seconds=cfg["AUTO_REPLY_INTERVAL"]),
        )
        .limit(1)
    )
    if recent is not None:
        return False
    cap = int(cfg.get("AUTO_REPLY_MAX_PER_HOUR") or 0)
    sent = db.session.scalar(
        select(func.count())
        .select_from(Message)
        # a literal, not a bound parameter: only then may the planners use the partial index
        .where(text_sql(f"messages.kind = '{Kind.AUTO_REPLY}'"), Message.created_at >= now - timedelta(hours=1))
    )
    if (sent or 0) >= cap:
        _warn_cap(cap)
        return False
    return True


def _warn_cap(cap: int) -> None:
    global _last_cap_warning
    if time.monotonic() - _last_cap_warning > 60:
        _last_cap_warning = time.monotonic()
        log.warning("auto-replies paused: %d went out in the last hour (AUTO_REPLY_MAX_PER_HOUR)", cap)
