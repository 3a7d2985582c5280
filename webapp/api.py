"""JSON API for the firm's backend, behind `Authorization: Bearer <API_TOKEN>`.

API_TOKEN must have at least 32 characters (start refuses a shorter one outside DEBUG). Wrong tokens are
slowed down per client address: after API_FREE_FAILURES the address waits (429, Retry-After) before any token
from it is checked again, doubling up to a minute.
"""

from __future__ import annotations

import hmac
import re
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from . import audit, services
from .delivery_errors import explain
from .extensions import csrf
from .hardening import MAX_ID, JSONInputError, read_json
from .idempotency import idempotent
from .models import AuditEvent, Chat, Message, OptOut
from .openapi import describe
from .services.chats import messages_of, validate_chat_request
from .states import TROUBLE, Actor, Kind
from .throttle import FailureThrottle, Key

bp = Blueprint("api", __name__)
csrf.exempt(bp)

MAX_LIMIT = 200
PUBLIC = {"api.openapi_document"}  # served without the bearer token


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def message_json(m: Message) -> dict[str, Any]:
    return {
        "id": m.id,
        "direction": "inbound" if m.direction == "in" else "outbound",
        "kind": m.kind,
        "side": m.side,
        "text": m.text,
        "status": m.status,
        "error": m.error,
        "attempts": m.attempts or 0,
        # sent again by the outbox after an unanswered send got no delivery receipt in time
        "resent": int((m.meta or {}).get("auto_resent", 0)),
        "created_at": _iso(m.created_at),
        "updated_at": _iso(m.updated_at),
        # a dispatcher's own message: who sent it ("api", "operator:<name>")
        "sent_by": (m.meta or {}).get("sent_by") if m.kind == Kind.OPERATOR else None,
        # REDACT_CONTACTS removed contact details: the inbound text is the original, its relay the redacted one
        "redacted": bool((m.meta or {}).get("redacted")),
        # why it failed (or may not have been sent), in words, from Vonage's code (docs/vonage-errors.md)
        "error_detail": _error_detail(m),
        # earlier attempts of this same message (retried, or sent again by the outbox), oldest first
        "history": [
            {"at": h.get("at"), "status": h.get("status"), "error": h.get("error"), "then": h.get("then")}
            for h in (m.meta or {}).get("history") or [] if isinstance(h, dict)
        ],
        # a dispatcher's resend: the message this one replaces, and the one that replaced this one
        "resend_of": _int_or_none((m.meta or {}).get("resend_of")),
        "resent_as": _int_or_none((m.meta or {}).get("resent_as")),
    }


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _error_detail(m: Message) -> dict[str, Any] | None:
    if m.direction != "out" or m.status not in TROUBLE:
        return None
    why = explain(m.error or f"delivery {m.status}")
    return why.as_json() if why else None


def chat_json(chat: Chat, with_messages: bool = False) -> dict[str, Any]:
    out = {
        "id": chat.id,
        "status": chat.status,
        "proxy_number": chat.proxy_number,
        "a": chat.a_number,
        "b": chat.b_number,
        "a_label": chat.a_label,
        "b_label": chat.b_label,
        "reference": chat.reference,
        "ended_reason": chat.ended_reason,
        "created_at": _iso(chat.created_at),
        "ended_at": _iso(chat.ended_at),
        "last_activity_at": _iso(chat.last_activity_at),
        "expires_at": _iso(chat.expires_at),
        "idle_timeout": chat.idle_timeout,
        "idle_deadline": _iso(chat.idle_at),  # when it ends unless someone texts (moves with every text)
        "ended_by": chat.ended_by,
    }
    if with_messages:
        out["messages"] = [message_json(m) for m in messages_of(chat.id)]
    return out


def _error(status: int, message: str, field: str | None = None) -> tuple[Response, int]:
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    return jsonify(body), status


API_FREE_FAILURES = 10  # wrong tokens per client address before it has to wait
_ID = re.compile(r"[0-9]{1,19}")


def _token_throttle() -> FailureThrottle:
    app = current_app
    if "api_token_throttle" not in app.extensions:
        app.extensions["api_token_throttle"] = FailureThrottle(base_delay=1.0, max_delay=60.0)
    return app.extensions["api_token_throttle"]


@bp.before_request
def _require_token():
    if request.endpoint in PUBLIC:
        return None
    token = current_app.config["API_TOKEN"]
    if not token:
        return _error(503, "The API is disabled: set API_TOKEN to enable it")
    key = Key(f"api:{request.remote_addr}", API_FREE_FAILURES)
    wait = _token_throttle().acquire([key])
    if wait:
        resp, status = _error(429, f"too many wrong bearer tokens from this address; try again in {wait} s")
        resp.headers["Retry-After"] = str(wait)
        return resp, status
    given = request.headers.get("Authorization", "")
    scheme, _, value = given.partition(" ")
    ok = scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode("utf-8", "replace"), token.encode("utf-8")
    )
    if not ok:
        _token_throttle().record_failure(key)
        resp, status = _error(401, "missing or wrong bearer token (Authorization: Bearer <API_TOKEN>)")
        resp.headers["WWW-Authenticate"] = 'Bearer realm="api"'
        return resp, status
    return None


@bp.errorhandler(services.ServiceError)
def _service_error(exc: services.ServiceError):
    return _error(exc.status, exc.message, exc.field)


def _body() -> dict[str, Any]:
    if request.is_json:
        try:
            body = read_json()  # refuses deep nesting and NUL (hardening.py)
        except JSONInputError as exc:
            raise services.InvalidInput(str(exc)) from None
        if not isinstance(body, dict):
            raise services.InvalidInput("the body must be a JSON object")
        return body
    body = request.form.to_dict()
    if any("\x00" in k or "\x00" in v for k, v in body.items()):
        raise services.InvalidInput("the request contains a NUL character")
    return body


def _create(body: dict[str, Any], a_key: str, b_key: str):
    req = validate_chat_request(
        body.get(a_key),
        body.get(b_key),
        body.get("a_label"),
        body.get("b_label"),
        body.get("reference"),
        expires_in=body.get("expires_in"),
        idle_timeout=body.get("idle_timeout"),
    )
    chat = services.start_chat(req, created_by="api", actor=Actor.API)
    return jsonify(chat_json(chat)), 201


@bp.post("/api/chats")
@idempotent
def create_chat():
    return _create(_body(), "a", "b")


@bp.post("/chat")
@idempotent
def create_chat_legacy():
    """The original tutorial's endpoint: userANumber / userBNumber, as form or JSON."""
    body = _body()
    try:
        return _create(body, "userANumber", "userBNumber")
    except services.InvalidInput as exc:
        # name the field as this endpoint's caller wrote it
        if exc.field in ("a", "b"):
            exc.field = {"a": "userANumber", "b": "userBNumber"}[exc.field]
            exc.message = exc.field + exc.message[1:]
        raise


def _int_arg(name: str, default: int, low: int, high: int | None = None) -> int:
    raw = (request.args.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise services.InvalidInput(f"{name} must be a whole number", field=name) from None
    if value < low or (high is not None and value > high):
        within = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise services.InvalidInput(f"{name} must be {within}, not {value}", field=name)
    return value


@bp.get("/api/chats")
def list_chats():
    status = request.args.get("status") or None
    reference = (request.args.get("reference") or "").strip() or None
    limit = _int_arg("limit", 100, 1, MAX_LIMIT)
    offset = _int_arg("offset", 0, 0, MAX_ID)
    chats, total = services.find_chats(status, reference, limit, offset)
    return jsonify({"chats": [chat_json(c) for c in chats], "total": total, "limit": limit, "offset": offset})


@bp.get("/api/openapi.json")
def openapi_document():
    """The OpenAPI 3.1 description of this API (openapi.py); public, like any API reference."""
    return jsonify(describe(current_app))


def _chat_id(raw: str) -> int:
    """A chat id as the database can hold it; anything else names no chat (404, never an overflow)."""
    if not _ID.fullmatch(raw) or int(raw) > MAX_ID:
        shown = raw if len(raw) <= 30 and raw.isprintable() else raw[:30].encode("unicode_escape").decode() + "…"
        raise services.NotFound(f"no chat with id {shown!r}", field="id")
    return int(raw)


@bp.get("/api/chats/<chat_id>")
def get_chat(chat_id: str):
    return jsonify(chat_json(services.get_chat(_chat_id(chat_id)), with_messages=True))


@bp.post("/api/chats/<chat_id>/end")
@idempotent
def end_chat(chat_id: str):
    chat = services.end_chat(_chat_id(chat_id), reason="api", actor=Actor.API)
    return jsonify(chat_json(chat))


@bp.post("/api/chats/<chat_id>/messages")
@idempotent
def send_message(chat_id: str):
    """The firm's own SMS to a party: {"to": "a"|"b"|"both", "text": "..."}."""
    body = _body()
    sent = services.send_operator_message(_chat_id(chat_id), body.get("to"), body.get("text"), actor=Actor.API)
    return jsonify({"messages": [message_json(m) for m in sent]}), 201


@bp.get("/api/chats/<chat_id>/transcript.csv")
def transcript(chat_id: str):
    chat, text = services.transcript_csv(_chat_id(chat_id), actor=Actor.API)
    return Response(
        text,
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="chat-{chat.id}-transcript.csv"'},
    )


def _limit(default: int, most: int) -> int:
    raw = request.args.get("limit", default)
    try:
        limit = int(raw)
    except (TypeError, ValueError):
        raise services.InvalidInput("limit must be a whole number", field="limit") from None
    if not 1 <= limit <= most:
        raise services.InvalidInput(f"limit must be between 1 and {most}", field="limit")
    return limit


def _optional_int(name: str) -> int | None:
    raw = request.args.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise services.InvalidInput(f"{name} must be a whole number", field=name) from None


def opt_out_json(o: OptOut) -> dict[str, Any]:
    return {"number": o.number, "created_at": _iso(o.created_at)}


@bp.get("/api/opt-outs")
def opt_outs():
    """The opt-out register, newest first: numbers that texted STOP and have not texted START since."""
    rows = services.list_opt_outs(_limit(100, 1000), max(_optional_int("offset") or 0, 0))
    return jsonify({"opt_outs": [opt_out_json(o) for o in rows]})


def audit_json(e: AuditEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": _iso(e.at),
        "actor": e.actor,
        "action": e.action,
        "chat_id": e.chat_id,
        "detail": e.detail,
    }


@bp.get("/api/audit")
def audit_events():
    """The audit trail, newest first; `before=<id>` pages back, `chat_id=` keeps one chat's."""
    events = audit.recent(
        _limit(50, audit.MAX_LIMIT), before=_optional_int("before"), chat_id=_optional_int("chat_id")
    )
    return jsonify({"events": [audit_json(e) for e in events]})
