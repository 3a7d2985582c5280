"""JSON API for the firm's backend, behind `Authorization: Bearer <API_TOKEN>`."""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from . import services
from .extensions import csrf
from .idempotency import idempotent
from .models import Chat, Message
from .openapi import describe
from .services.chats import messages_of, validate_chat_request

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
        "created_at": _iso(m.created_at),
        "updated_at": _iso(m.updated_at),
    }


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
    }
    if with_messages:
        out["messages"] = [message_json(m) for m in messages_of(chat.id)]
    return out


def _error(status: int, message: str, field: str | None = None) -> tuple[Response, int]:
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    return jsonify(body), status


@bp.before_request
def _require_token():
    if request.endpoint in PUBLIC:
        return None
    token = current_app.config["API_TOKEN"]
    if not token:
        return _error(503, "The API is disabled: set API_TOKEN to enable it")
    given = request.headers.get("Authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
        resp, status = _error(401, "missing or wrong bearer token (Authorization: Bearer <API_TOKEN>)")
        resp.headers["WWW-Authenticate"] = 'Bearer realm="api"'
        return resp, status
    return None


@bp.errorhandler(services.ServiceError)
def _service_error(exc: services.ServiceError):
    return _error(exc.status, exc.message, exc.field)


def _body() -> dict[str, Any]:
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise services.InvalidInput("the body must be a JSON object")
        return body
    return request.form.to_dict()


def _create(body: dict[str, Any], a_key: str, b_key: str):
    req = validate_chat_request(
        body.get(a_key), body.get(b_key), body.get("a_label"), body.get("b_label"), body.get("reference")
    )
    chat = services.start_chat(req, created_by="api")
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
    offset = _int_arg("offset", 0, 0)
    chats, total = services.find_chats(status, reference, limit, offset)
    return jsonify({"chats": [chat_json(c) for c in chats], "total": total, "limit": limit, "offset": offset})


@bp.get("/api/openapi.json")
def openapi_document():
    """The OpenAPI 3.1 description of this API (openapi.py); public, like any API reference."""
    return jsonify(describe(current_app))


def _chat_id(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise services.NotFound(f"no chat with id {raw!r}", field="id") from None


@bp.get("/api/chats/<chat_id>")
def get_chat(chat_id: str):
    return jsonify(chat_json(services.get_chat(_chat_id(chat_id)), with_messages=True))


@bp.post("/api/chats/<chat_id>/end")
@idempotent
def end_chat(chat_id: str):
    chat = services.end_chat(_chat_id(chat_id), reason="api")
    return jsonify(chat_json(chat))
