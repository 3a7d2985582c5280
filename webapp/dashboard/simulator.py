"""The simulator (SMS_GATEWAY=simulated only): virtual handsets that read what our numbers sent them and reply.

A reply enters the app exactly as Vonage's would: a POST to the inbound-SMS webhook with Vonage's fields
(signed, when a signature secret is configured), dispatched in-process through the whole WSGI stack.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from flask import Blueprint, abort, current_app, render_template, request, url_for

from .. import queries
from ..gateway.loopback import post_webhook
from ..proxy import InvalidNumber, parse_number, to_vonage

bp = Blueprint("simulator", __name__, url_prefix="/simulator")

# Ofcom's drama range: real-looking UK mobile numbers that belong to nobody.
HANDSETS = [
    ("Handset 1", "+447700900111"),
    ("Handset 2", "+447700900222"),
    ("Handset 3", "+447700900333"),
    ("Handset 4", "+447700900444"),
]
MAX_TEXT = 1000


@bp.before_request
def _only_when_simulated():
    if current_app.config["SMS_GATEWAY"] != "simulated":
        abort(404)


def _number(digits: str) -> str:
    try:
        return parse_number("+" + digits.lstrip("+"), "ZZ")
    except InvalidNumber:
        abort(404)


def _targets(number: str, pool: list[str]) -> list[dict]:
    """Where a reply from this phone can go: each proxy number, and the chat it reaches there (if any).

    A phone in two chats talks to two proxy numbers; each option says which chat (and whom) it reaches, so
    the tester chooses the conversation, not a bare number."""
    chats = queries.chats_by_proxy(number)
    targets = []
    for proxy in pool:
        chat = chats.get(proxy)
        if chat is None:
            targets.append({"proxy": proxy, "chat_id": None, "label": "no chat here: goes to Unrouted"})
            continue
        side = "b" if chat.a_number == number else "a"
        other = chat.label(side) or _name_of(chat.number(side))
        ref = f", {chat.reference}" if chat.reference else ""
        targets.append({"proxy": proxy, "chat_id": chat.id, "label": f"chat #{chat.id} with {other}{ref}"})
    return targets


def _handset(name: str, number: str, error: str | None = None, text: str = "", reply_to: str | None = None) -> dict:
    pool = queries.pool_numbers()
    active = queries.proxies_of(number)  # most recent chat first
    if reply_to not in pool:
        reply_to = active[0] if active else (pool[0] if pool else None)
    return {
        "name": name,
        "number": number,
        "key": to_vonage(number),
        "messages": queries.handset_messages(number),
        "pool": pool,
        "targets": _targets(number, pool),
        "reply_to": reply_to,
        "active": set(active),
        "error": error,
        "text": text,
    }


def _name_of(number: str) -> str:
    return next((name for name, n in HANDSETS if n == number), "Extra handset")


def inbound_params(sender: str, proxy: str, text: str) -> dict[str, str]:
    """The fields Vonage's inbound-SMS webhook carries (SMS API, POST form)."""
    now = datetime.now(UTC)
    params = {
        "msisdn": to_vonage(sender),
        "to": to_vonage(proxy),
        "messageId": "SIM" + uuid.uuid4().hex[:13].upper(),
        "text": text,
        "type": "text" if text.isascii() else "unicode",
        "keyword": (text.split() or [""])[0].upper()[:20],
        "message-timestamp": now.strftime("%Y-%m-%d %H:%M:%S"),
    }
    return params


def deliver_to_webhook(params: dict[str, str]) -> tuple[int, str]:
    """POST to our own inbound webhook, in-process, as Vonage would (signed, with the token); (status, error)."""
    status, body = post_webhook(current_app._get_current_object(), url_for("webhooks.inbound_sms"), params)
    if status in (200, 204):
        return status, ""
    return status, str(body.get("error") or status)


@bp.get("/")
def index():
    shown = [n for _, n in HANDSETS]
    handsets = [_handset(name, number) for name, number in HANDSETS]
    return render_template("simulator/simulator.html", handsets=handsets, shown=shown)


@bp.get("/handsets/<digits>")
def handset(digits: str):
    number = _number(digits)
    return render_template("simulator/_handset.html", h=_handset(_name_of(number), number))


@bp.get("/handsets/<digits>/thread")
def thread(digits: str):
    number = _number(digits)
    return render_template("simulator/_thread.html", h=_handset(_name_of(number), number))


@bp.post("/handsets/<digits>/send")
def send(digits: str):
    number = _number(digits)
    text = (request.form.get("text") or "").strip()
    to = request.form.get("to") or ""
    error = None
    if not text:
        error = "Type a message first."
    elif len(text) > MAX_TEXT:
        error = f"Keep it under {MAX_TEXT} characters."
    elif to not in queries.pool_numbers():
        error = "Choose one of the proxy numbers."
    else:
        status, problem = deliver_to_webhook(inbound_params(number, to, text))
        if problem:
            error = f"The webhook answered {status}: {problem}"
    h = _handset(_name_of(number), number, error=error, text=text if error else "", reply_to=to)
    return render_template("simulator/_handset.html", h=h), (422 if error else 200)
