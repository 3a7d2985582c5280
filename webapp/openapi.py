"""The OpenAPI 3.1 description of the JSON API (served at GET /api/openapi.json), and of the event callbacks
sent to EVENTS_URL (the document's `webhooks`).

Every `/api` route (and the tutorial's `POST /chat`) is described here with its request body, its responses
and its errors; `describe(app)` keeps the paths of the routes the app actually has, so a route described
ahead of its code (the dispatcher's messages, opt-outs, audit, transcripts) appears once it exists.
tests/test_openapi.py proves both directions (every route described, nothing described that is not served)
and validates real responses and real event callbacks against this document with openapi-core.
Enumerations come from states.py, so the document and the code cannot disagree.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from flask import Flask

from .states import ChatStatus, EndedReason, EventType, Kind, Status

E164 = r"^\+[1-9][0-9]{6,14}$"
TIME = {"type": "string", "format": "date-time"}
TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
TEXT_OR_NULL = {"type": ["string", "null"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _json(schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}, **extra}


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "Every error: a sentence for people, and the offending field where there is one.",
        "required": ["error"],
        "properties": {
            "error": {"type": "string"},
            "field": {"type": "string", "description": "e.g. `a`, `b`, `reference`, `limit`, `Idempotency-Key`"},
        },
    },
    "Chat": {
        "type": "object",
        "description": "Two real numbers joined through one proxy number. Numbers are E.164.",
        "required": ["id", "status", "proxy_number", "a", "b", "a_label", "b_label", "reference", "ended_reason",
                     "created_at", "ended_at", "last_activity_at"],
        "properties": {
            "id": {"type": "integer"},
            "status": {"enum": [str(s) for s in ChatStatus]},
            "proxy_number": {"type": "string", "pattern": E164},
            "a": {"type": "string", "pattern": E164},
            "b": {"type": "string", "pattern": E164},
            "a_label": TEXT_OR_NULL,
            "b_label": TEXT_OR_NULL,
            "reference": {**TEXT_OR_NULL, "description": "the caller's own id (a ride, a booking)"},
            "ended_reason": {"enum": [*(str(r) for r in EndedReason), None]},
            "created_at": TIME,
            "ended_at": TIME_OR_NULL,
            "last_activity_at": TIME,
            "expires_at": {**TIME_OR_NULL, "description": "when the chat ends by itself (null: never)"},
            "idle_timeout": {"type": ["integer", "null"],
                             "description": "seconds without a text after which the chat ends (null: never)"},
        },
    },
    "Message": {
        "type": "object",
        "description": "One SMS received from a party or sent by us. `side` is the sender of an inbound text and "
                       "the recipient of an outbound one.",
        "required": ["id", "direction", "kind", "side", "text", "status", "error", "created_at", "updated_at"],
        "properties": {
            "id": {"type": "integer"},
            "direction": {"enum": ["inbound", "outbound"]},
            "kind": {"enum": [str(k) for k in Kind]},
            "side": {"enum": ["a", "b", None]},
            "text": {"type": "string"},
            "status": {"enum": [str(s) for s in Status]},
            "error": TEXT_OR_NULL,
            "error_detail": {
                "description": "why an outbound message failed (or may not have been sent), in words, from "
                               "Vonage's err-code or send status; null otherwise",
                "oneOf": [{"type": "null"}, _ref("ErrorDetail")],
            },
            "history": {
                "type": "array",
                "description": "earlier attempts of this same message (retried, or sent again by the outbox)",
                "items": {
                    "type": "object",
                    "required": ["at", "status", "error", "then"],
                    "properties": {"at": TIME_OR_NULL, "status": {"type": "string"}, "error": TEXT_OR_NULL,
                                   "then": {"enum": ["retried", "resent", None]}},
                },
            },
            "resend_of": {"type": ["integer", "null"], "description": "the message a dispatcher's resend replaces"},
            "resent_as": {"type": ["integer", "null"], "description": "the message that replaced this one"},
            "created_at": TIME,
            "updated_at": TIME,
        },
    },
    "ErrorDetail": {
        "type": "object",
        "required": ["source", "code", "name", "summary", "suggestion", "temporary"],
        "properties": {
            "source": {"enum": ["delivery_receipt", "send", "transport"]},
            "code": {"type": ["integer", "null"], "description": "Vonage's err-code or send status"},
            "name": {"type": "string", "description": "Vonage's name for the code"},
            "summary": {"type": "string", "description": "what happened, for a dispatcher"},
            "suggestion": {"type": "string", "description": "what a dispatcher can do about it"},
            "temporary": {"type": "boolean", "description": "sending it again later may work"},
        },
    },
    "ChatWithMessages": {
        "allOf": [
            _ref("Chat"),
            {"type": "object", "required": ["messages"],
             "properties": {"messages": {"type": "array", "items": _ref("Message")}}},
        ],
    },
    "ChatList": {
        "type": "object",
        "required": ["chats", "total", "limit", "offset"],
        "properties": {
            "chats": {"type": "array", "items": _ref("Chat")},
            "total": {"type": "integer", "minimum": 0, "description": "chats matching the filters, all pages"},
            "limit": {"type": "integer", "minimum": 1, "maximum": 200},
            "offset": {"type": "integer", "minimum": 0},
        },
    },
    "NewChat": {
        "type": "object",
        "required": ["a", "b"],
        "properties": {
            "a": {"type": "string", "description": "E.164, or national format in DEFAULT_REGION"},
            "b": {"type": "string"},
            "a_label": {"type": "string", "maxLength": 60, "description": "how A is named to B (\"Customer\")"},
            "b_label": {"type": "string", "maxLength": 60},
            "reference": {"type": "string", "maxLength": 120, "description": "your own id, searchable"},
            "expires_in": {"type": "integer", "minimum": 60, "maximum": 31536000,
                           "description": "seconds until the chat ends by itself"},
            "idle_timeout": {"type": "integer", "minimum": 60, "maximum": 31536000,
                             "description": "seconds without a text after which the chat ends"},
        },
    },
    "LegacyNewChat": {
        "type": "object",
        "required": ["userANumber", "userBNumber"],
        "properties": {
            "userANumber": {"type": "string"},
            "userBNumber": {"type": "string"},
            "a_label": {"type": "string", "maxLength": 60},
            "b_label": {"type": "string", "maxLength": 60},
            "reference": {"type": "string", "maxLength": 120},
        },
    },
    "NewMessages": {
        "type": "object",
        "required": ["to", "text"],
        "properties": {"to": {"enum": ["a", "b", "both"]}, "text": {"type": "string", "minLength": 1}},
    },
    "MessageList": {
        "type": "object",
        "required": ["messages"],
        "properties": {"messages": {"type": "array", "items": _ref("Message")}},
    },
    "OptOuts": {
        "type": "object",
        "required": ["opt_outs"],
        "properties": {"opt_outs": {"type": "array", "items": {
            "type": "object", "required": ["number", "created_at"],
            "properties": {"number": {"type": "string", "pattern": E164}, "created_at": TIME}}}},
    },
    "Audit": {
        "type": "object",
        "required": ["events"],
        "properties": {"events": {"type": "array", "items": {
            "type": "object", "required": ["id", "at", "actor", "action", "chat_id", "detail"],
            "properties": {"id": {"type": "integer"}, "at": TIME, "actor": {"type": "string"},
                           "action": {"type": "string"}, "chat_id": {"type": ["integer", "null"]},
                           "detail": {}}}}},
    },
    "Event": {
        "type": "object",
        "description": "An event callback, POSTed to EVENTS_URL (docs/events.md). The same `id` on every retry.",
        "required": ["id", "type", "created_at", "data"],
        "properties": {
            "id": {"type": "string", "description": "unique per event; deduplicate on it"},
            "type": {"enum": [str(t) for t in EventType]},
            "created_at": TIME,
            "data": _ref("EventData"),
        },
    },
    "EventData": {
        "type": "object",
        "description": "What happened. Every event of a chat carries the chat's fields; message events add the "
                       "message's. Numbers are in full (E.164).",
        "required": ["chat_id", "reference", "proxy_number", "a", "b", "a_label", "b_label", "status", "reason"],
        "properties": {
            "chat_id": {"type": ["integer", "null"]},
            "reference": TEXT_OR_NULL,
            "proxy_number": {"type": "string", "pattern": E164},
            "a": {"type": "string", "pattern": E164},
            "b": {"type": "string", "pattern": E164},
            "a_label": TEXT_OR_NULL,
            "b_label": TEXT_OR_NULL,
            "status": {"type": "string", "description": "the chat's state (chat events), the message's state "
                                                        "(message events), `opt_out` (participant.opted_out)"},
            "reason": {**TEXT_OR_NULL, "description": "chat.ended: the ended_reason (operator, api, opt_out, "
                                                      "expired, idle); message.failed: why"},
            "message_id": {"type": "integer", "description": "message events, participant.opted_out"},
            "direction": {"enum": ["inbound", "outbound"]},
            "kind": {"enum": [str(k) for k in Kind]},
            "side": {"enum": ["a", "b"]},
            "from": {"type": "string", "pattern": E164, "description": "message.received: the sender"},
            "to": {"type": "string", "pattern": E164},
            "label": TEXT_OR_NULL,
            "number": {"type": "string", "pattern": E164, "description": "participant.opted_out: who"},
            "text": {"type": "string", "description": "message.received: what the party wrote"},
            "source_message_id": {"type": ["integer", "null"],
                                  "description": "a relay: the inbound message it carries"},
            "created_at": TIME_OR_NULL,
            "ended_at": TIME_OR_NULL,
            "at": TIME,
        },
    },
}

PARAMETERS: dict[str, Any] = {
    "ChatId": {"name": "chat_id", "in": "path", "required": True, "schema": {"type": "integer"}},
    "IdempotencyKey": {
        "name": "Idempotency-Key", "in": "header", "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        "description": "Makes a retry safe: the same key with the same body replays the first response (status "
                       "and body) without doing anything again; with a different body it answers 422. Keys are "
                       "kept at least 24 h. A UUID per logical request is a good choice.",
    },
}

RESPONSES: dict[str, Any] = {
    "BadRequest": _error("Bad input; `field` names it"),
    "Unauthorized": {**_error("Missing or wrong bearer token"),
                     "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}},
    "NotFound": _error("No such chat"),
    "Conflict": _error("Not possible in the current state (e.g. no proxy number free, chat already ended, a "
                       "request with this Idempotency-Key still in progress)"),
    "KeyReused": _error("This Idempotency-Key was used for a different request"),
    "Unavailable": _error("The API is disabled (API_TOKEN is empty) or the database is busy; retry"),
}


def _responses(ok: dict[str, Any], *errors: str) -> dict[str, Any]:
    out = dict(ok)
    codes = {"400": "BadRequest", "401": "Unauthorized", "404": "NotFound", "409": "Conflict",
             "422": "KeyReused", "503": "Unavailable"}
    for code in errors:
        out[code] = {"$ref": f"#/components/responses/{codes[code]}"}
    out.setdefault("401", {"$ref": "#/components/responses/Unauthorized"})
    out.setdefault("503", {"$ref": "#/components/responses/Unavailable"})
    return out


REPLAYED = {"Idempotent-Replayed": {"schema": {"enum": ["true"]},
                                    "description": "present when this is the stored response of an earlier "
                                                   "request with the same Idempotency-Key"}}
CHAT_ID = {"$ref": "#/components/parameters/ChatId"}
KEY = {"$ref": "#/components/parameters/IdempotencyKey"}
FORM_OR_JSON = ("application/json", "application/x-www-form-urlencoded")

# Flask rule (as the app registers it, with <int:...> written <...>) -> OpenAPI path item.
PATHS: dict[str, tuple[str, dict[str, Any]]] = {
    "/api/chats": ("/api/chats", {
        "post": {
            "operationId": "createChat",
            "summary": "Pair two numbers into a chat; both get an introduction from the proxy number",
            "description": "A number that cannot receive texts (a landline unless ALLOW_FIXED_LINE, premium-rate, "
                           "shared-cost, toll-free, ...) is refused with 400 naming `a` or `b`.",
            "parameters": [KEY],
            "requestBody": {"required": True, "content": {t: {"schema": _ref("NewChat")} for t in FORM_OR_JSON}},
            "responses": _responses({"201": _json(_ref("Chat"), "The new chat", headers=REPLAYED)},
                                    "400", "409", "422"),
        },
        "get": {
            "operationId": "listChats",
            "summary": "Chats, most recently active first, with the total that match",
            "parameters": [
                {"name": "status", "in": "query", "schema": {"enum": ["active", "ended"]}},
                {"name": "reference", "in": "query", "schema": {"type": "string", "maxLength": 120},
                 "description": "only chats with exactly this reference"},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200,
                                                            "default": 100},
                 "description": "outside 1..200: 400"},
                {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
            ],
            "responses": _responses({"200": _json(_ref("ChatList"), "One page of chats")}, "400"),
        },
    }),
    "/api/chats/<chat_id>": ("/api/chats/{chat_id}", {
        "get": {
            "operationId": "getChat",
            "summary": "A chat with its messages (each with its delivery state)",
            "parameters": [CHAT_ID],
            "responses": _responses({"200": _json(_ref("ChatWithMessages"), "The chat")}, "404"),
        },
    }),
    "/api/chats/<chat_id>/end": ("/api/chats/{chat_id}/end", {
        "post": {
            "operationId": "endChat",
            "summary": "End a chat: its routes are freed and (by configuration) both parties are told",
            "parameters": [CHAT_ID, KEY],
            "responses": _responses({"200": _json(_ref("Chat"), "The ended chat", headers=REPLAYED)},
                                    "400", "404", "409", "422"),
        },
    }),
    "/api/chats/<chat_id>/messages": ("/api/chats/{chat_id}/messages", {
        "post": {
            "operationId": "sendMessages",
            "summary": "Text one party, or both, from the chat's proxy number (kind `operator`)",
            "parameters": [CHAT_ID, KEY],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("NewMessages")}}},
            "responses": _responses({"201": _json(_ref("MessageList"), "The messages queued", headers=REPLAYED)},
                                    "400", "404", "409", "422"),
        },
    }),
    "/api/chats/<chat_id>/transcript.csv": ("/api/chats/{chat_id}/transcript.csv", {
        "get": {
            "operationId": "getTranscript",
            "summary": "The chat's transcript as CSV (a header row, one row per message)",
            "parameters": [CHAT_ID],
            "responses": _responses({"200": {"description": "CSV", "content": {"text/csv": {
                "schema": {"type": "string"}}}}}, "404"),
        },
    }),
    "/api/opt-outs": ("/api/opt-outs", {
        "get": {
            "operationId": "listOptOuts",
            "summary": "Numbers that texted STOP (pairing them answers 409)",
            "responses": _responses({"200": _json(_ref("OptOuts"), "The opt-out register")}),
        },
    }),
    "/api/audit": ("/api/audit", {
        "get": {
            "operationId": "listAudit",
            "summary": "What operators and the API did, newest first",
            "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}}],
            "responses": _responses({"200": _json(_ref("Audit"), "Audit events")}, "400"),
        },
    }),
    "/api/openapi.json": ("/api/openapi.json", {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document (no token needed)",
            "security": [],
            "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
        },
    }),
    "/chat": ("/chat", {
        "post": {
            "operationId": "createChatLegacy",
            "summary": "The original tutorial's call: the same as POST /api/chats with userANumber/userBNumber",
            "deprecated": True,
            "parameters": [KEY],
            "requestBody": {"required": True,
                            "content": {t: {"schema": _ref("LegacyNewChat")} for t in FORM_OR_JSON}},
            "responses": _responses({"201": _json(_ref("Chat"), "The new chat", headers=REPLAYED)},
                                    "400", "409", "422"),
        },
    }),
}

WEBHOOKS: dict[str, Any] = {
    "event": {
        "post": {
            "summary": "An event callback to EVENTS_URL",
            "security": [],  # authenticated by its signature header, not a bearer token
            "description": "Sent at least once, in order per chat, signed. Any 2xx acknowledges it; anything else "
                           "(or no answer within 5 s) is retried with exponential backoff for up to 24 h with the "
                           "same `id`. Verify `X-SMS-Proxy-Signature` (HMAC-SHA256 with EVENTS_SECRET over "
                           "`<t>.<raw body>`) and refuse a `t` older than 5 minutes: docs/events.md.",
            "parameters": [
                {"name": "X-SMS-Proxy-Signature", "in": "header", "required": True,
                 "schema": {"type": "string", "pattern": r"^t=[0-9]+,v1=[0-9a-f]{64}$"}},
                {"name": "X-SMS-Proxy-Event-Id", "in": "header", "schema": {"type": "string"}},
                {"name": "X-SMS-Proxy-Attempt", "in": "header", "schema": {"type": "integer", "minimum": 1}},
            ],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Event")}}},
            "responses": {"2XX": {"description": "Received; it will not be sent again"},
                          "default": {"description": "Not received; it is sent again later"}},
        },
    },
}


def _normalise(rule: str) -> str:
    """`/api/chats/<int:chat_id>` -> `/api/chats/<chat_id>`."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"<\1>", rule)


def described_rules(app: Flask) -> dict[str, set[str]]:
    """The app's API routes ({normalised rule: methods}) that the document must describe."""
    rules: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/") or rule.rule == "/chat":
            methods = {m.lower() for m in (rule.methods or ()) if m not in {"HEAD", "OPTIONS"}}
            rules.setdefault(_normalise(rule.rule), set()).update(methods)
    return rules


def describe(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of this app's API: every described route it serves, with its methods."""
    served = described_rules(app)
    paths: dict[str, Any] = {}
    for rule, (path, item) in PATHS.items():
        methods = served.get(rule, set())
        kept = {m: op for m, op in item.items() if m in methods}
        if kept:
            paths[path] = copy.deepcopy(kept)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "SMS proxy API",
            "version": "1.0.0",
            "description": "Pair two people into a chat through a masked proxy number, follow it, end it. Every "
                           "call needs `Authorization: Bearer <API_TOKEN>`. Errors are JSON `{\"error\", "
                           "\"field\"}`. Event callbacks to EVENTS_URL are described under `webhooks`.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "webhooks": copy.deepcopy(WEBHOOKS),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": copy.deepcopy(SCHEMAS),
            "parameters": copy.deepcopy(PARAMETERS),
            "responses": copy.deepcopy(RESPONSES),
        },
    }
