"""How things look on the dashboard: Jinja filters for numbers, times and delivery states."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import phonenumbers
from flask import Flask, current_app

from .. import states
from ..models import Chat
from ..proxy import GSM7_BASIC, GSM7_EXT, mask, segments, sms_type

# Message states as a dispatcher reads them: (label, css class)
STATES = {
    "queued": ("queued", "pending"),
    "sending": ("sending", "pending"),
    "submitted": ("submitted", "sent"),
    "accepted": ("submitted", "sent"),
    "buffered": ("submitted", "sent"),
    "delivered": ("delivered", "ok"),
    "failed": ("failed", "bad"),
    "expired": ("failed: expired", "bad"),
    "rejected": ("failed: rejected", "bad"),
    "unknown": ("unknown: may not have been sent", "bad"),
    "unconfirmed": ("unconfirmed: checking with Vonage", "warn"),
    "received": ("received", "ok"),
    "unrouted": ("unrouted", "warn"),
    "opt_out": ("opted out", "warn"),
}

ENDED_REASONS = {
    "operator": "ended by a dispatcher",
    "api": "ended through the API",
    "expired": "expired (time limit)",
    "idle": "ended after inactivity",
    "opt_out": "a participant opted out (STOP)",
}


def actor_name(actor: str | None, chat: Chat | None = None) -> str:
    """An audit actor for people: "maria", "the API", "the system", "Customer (A)"."""
    if not actor:
        return "someone"
    kind, _, rest = actor.partition(":")
    if kind == "operator":
        return rest
    if kind == "participant":
        return f"{party(chat, rest)} ({rest.upper()})" if chat is not None else f"party {rest.upper()}"
    return {"api": "the API", "system": "the system", "cli": "the command line", "sms": "a text"}.get(
        actor, actor
    )


def ended_text(chat: Chat) -> str:
    """Why and by whom a chat ended: "ended by dispatcher maria", "expired (time limit)"..."""
    actor = chat.ended_by or ""
    if chat.ended_reason == "operator" and actor.startswith("operator:"):
        return f"ended by dispatcher {actor_name(actor)}"
    if chat.ended_reason == "opt_out" and actor.startswith("participant:"):
        return f"{actor_name(actor, chat)} opted out (STOP)"
    if chat.ended_reason == "idle" and chat.idle_timeout:
        return f"ended after {duration(chat.idle_timeout)} without texts"
    return ENDED_REASONS.get(chat.ended_reason or "", chat.ended_reason or "ended")


def duration(seconds: int | float | None) -> str:
    """`3600` -> "1 hour", `5400` -> "1.5 hours", `259200` -> "3 days", `45` -> "45 seconds"."""
    seconds = int(seconds or 0)
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            n = round(seconds / size, 1)
            return f"{n:g} {unit}{'' if n == 1 else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"


def time_left(when: datetime | None, now: datetime | None = None) -> str:
    """How long until `when`, as a dispatcher glances at it: "in 2 h 05 min", "in 45 s", "now".

    static/js/app.js keeps the same words ticking ([data-deadline]).
    """
    if when is None:
        return ""
    left = int((_aware(when) - (now or datetime.now(UTC))).total_seconds())
    if left <= 0:
        return "now"
    days, rest = divmod(left, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"in {days} d {hours} h"
    if hours:
        return f"in {hours} h {minutes:02d} min"
    if minutes:
        return f"in {minutes} min"
    return f"in {secs} s"


def deadline(chat: Chat) -> tuple[datetime, str] | None:
    """The chat's next deadline and which it is ("expires", "idle"), or None (ended, or no deadline)."""
    if chat.status != "active":
        return None
    options = [(d, k) for d, k in ((chat.expires_at, "expires"), (chat.idle_at, "idle")) if d is not None]
    return min(options, key=lambda o: _aware(o[0])) if options else None


def sms_count(text: str | None) -> str:
    """"42 characters · 1 SMS" (the compose box's counter; app.js updates it as you type)."""
    text = text or ""
    parts = segments(text) if text else 1
    kind = " (unicode)" if text and sms_type(text) == "unicode" else ""
    return f"{len(text)} characters{kind} · {parts} SMS{' parts' if parts > 1 else ''}"


def gsm_alphabet() -> dict[str, str]:
    """The GSM 03.38 alphabet the part counter in app.js needs (one definition: proxy.py)."""
    return {"basic": "".join(sorted(GSM7_BASIC)), "ext": "".join(sorted(GSM7_EXT))}


def pretty_number(e164: str | None) -> str:
    """A number written for people: `+44 7700 900123`."""
    if not e164:
        return "—"
    try:
        return phonenumbers.format_number(
            phonenumbers.parse(e164, None), phonenumbers.PhoneNumberFormat.INTERNATIONAL
        )
    except phonenumbers.NumberParseException:
        return e164


def person_number(e164: str | None) -> str:
    """A participant's real number, masked when MASK_NUMBERS_IN_UI is on."""
    if current_app.config["MASK_NUMBERS_IN_UI"]:
        return mask(e164)
    return pretty_number(e164)


def party(chat: Chat, side: str) -> str:
    """A participant's name: their label, or "A"/"B"."""
    return chat.label(side) or f"Party {side.upper()}"


def state_label(status: str | None) -> str:
    return STATES.get(status or "", (status or "—", "pending"))[0]


def state_class(status: str | None) -> str:
    return STATES.get(status or "", (status, "pending"))[1]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def clock(value: datetime | None) -> str:
    """`14:05` today, `3 Nov 14:05` before, always UTC (the machine-readable time is in <time datetime>)."""
    if value is None:
        return ""
    value = _aware(value).astimezone(UTC)
    now = datetime.now(UTC)
    if value.date() == now.date():
        return value.strftime("%H:%M")
    if value.year == now.year:
        return value.strftime("%-d %b %H:%M")
    return value.strftime("%-d %b %Y %H:%M")


def iso(value: datetime | None) -> str:
    return _aware(value).isoformat() if value else ""


def init_app(app: Flask) -> None:
    app.add_template_filter(person_number, "person")
    app.add_template_filter(pretty_number, "pretty")
    app.add_template_filter(state_label, "state_label")
    app.add_template_filter(state_class, "state_class")
    app.add_template_filter(clock, "clock")
    app.add_template_filter(iso, "iso")
    app.add_template_filter(time_left, "time_left")
    app.add_template_filter(duration, "duration")
    app.add_template_filter(sms_count, "sms_count")
    app.add_template_global(party, "party")
    app.add_template_global(ENDED_REASONS, "ENDED_REASONS")
    app.add_template_global(ended_text, "ended_text")
    app.add_template_global(actor_name, "actor_name")
    app.add_template_global(deadline, "deadline")
    app.add_template_global(gsm_alphabet, "gsm_alphabet")

    states_for_js = json.dumps(states.for_javascript(), separators=(",", ":"))
    app.add_template_global(states.Status, "Status")
    app.add_template_global(states.Kind, "Kind")

    @app.context_processor
    def _globals() -> dict:
        return {"simulated": app.config["SMS_GATEWAY"] == "simulated", "states_for_js": states_for_js}
