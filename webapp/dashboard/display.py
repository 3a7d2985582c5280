"""How things look on the dashboard: Jinja filters for numbers, times and delivery states."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import phonenumbers
from flask import Flask, current_app

from .. import states
from ..models import Chat
from ..proxy import mask

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
    "expired": "expired",
    "idle": "ended after inactivity",
    "opt_out": "a participant opted out (STOP)",
}


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
    app.add_template_global(party, "party")
    app.add_template_global(ENDED_REASONS, "ENDED_REASONS")

    states_for_js = json.dumps(states.for_javascript(), separators=(",", ":"))
    app.add_template_global(states.Status, "Status")
    app.add_template_global(states.Kind, "Kind")

    @app.context_processor
    def _globals() -> dict:
        return {"simulated": app.config["SMS_GATEWAY"] == "simulated", "states_for_js": states_for_js}
