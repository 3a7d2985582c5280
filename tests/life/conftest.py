"""Fixtures for a chat's whole life: expiry, dispatcher messages, opt-outs, audit, transcripts, retention,
the leak guard. Each test runs on SQLite and PostgreSQL (the root `app` fixture)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text

from webapp import outbox
from webapp.dashboard.auth import create_operator
from webapp.extensions import db

A, B, C, D = "+447700900111", "+447700900222", "+447700900333", "+447700900444"
STRANGER = "+447700900999"
PASSWORD = "correct horse battery"
CSRF_RE = re.compile(r'name="csrf-token" content="([^"]+)"')


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "config(**settings): app settings for this test (tests/life)")


@pytest.fixture
def app_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    """`@pytest.mark.config(CHAT_TTL_SECONDS=2)` sets the app's configuration for one test."""
    marker = request.node.get_closest_marker("config")
    return dict(marker.kwargs) if marker else {}


def wire(number: str) -> str:
    return number.lstrip("+")


@pytest.fixture
def api(client, api_headers) -> Callable[..., Any]:
    """`api("post", "/api/chats", json=...)` with the bearer token."""

    def call(method: str, path: str, **kwargs: Any):
        return getattr(client, method)(path, headers=api_headers, **kwargs)

    return call


@pytest.fixture
def pair(api) -> Callable[..., dict]:
    def make(a: str = A, b: str = B, **extra: Any) -> dict:
        resp = api("post", "/api/chats", json={"a": a, "b": b, **extra})
        assert resp.status_code == 201, resp.json
        return resp.json

    return make


@pytest.fixture
def sms(client) -> Callable[..., Any]:
    """Post an inbound SMS to the webhook as Vonage does; returns the response."""
    counter = iter(range(10**9))

    def post(sender: str, proxy: str, body: str, **extra: str):
        params = {"msisdn": wire(sender), "to": wire(proxy), "text": body, "type": "text",
                  "messageId": f"LIFE{next(counter):010d}", **extra}
        resp = client.post("/webhooks/inbound-sms", data=params)
        assert resp.status_code == 204, resp.get_data(as_text=True)
        return resp

    return post


@pytest.fixture
def sent(gateway) -> Callable[[], list[dict]]:
    """Send what is queued and return what went out since the last call."""

    def flush() -> list[dict]:
        while outbox.drain_once():
            pass
        out = list(gateway.sent)
        gateway.sent.clear()
        return out

    return flush


@pytest.fixture
def dispatcher(app: Flask):
    """A test client signed in as the operator "maria", with `.csrf` for forms."""
    client = app.test_client()
    create_operator("maria", PASSWORD)
    token = CSRF_RE.search(client.get("/login").text).group(1)
    resp = client.post("/login", data={"name": "maria", "password": PASSWORD, "csrf_token": token})
    assert resp.status_code == 302
    client.csrf = CSRF_RE.search(client.get("/").text).group(1)
    return client


def htmx(client, url: str, data: dict | None = None):
    headers = {"HX-Request": "true", "X-CSRFToken": client.csrf}
    if data is None:
        return client.get(url, headers=headers)
    return client.post(url, data=data, headers=headers)


def poison(name: str, table: str, when: str, timing: str = "BEFORE UPDATE") -> None:
    """A trigger that makes the database refuse some writes, as a broken row or a bug would (not a mock)."""
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text(
            f"CREATE FUNCTION {name}() RETURNS trigger AS $$ BEGIN IF {when} THEN "
            f"RAISE EXCEPTION 'poisoned row'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"))
        db.session.execute(text(
            f"CREATE TRIGGER {name} {timing} ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()"))
    else:
        db.session.execute(text(
            f"CREATE TRIGGER {name} {timing} ON {table} WHEN {when} BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"))
    db.session.commit()


def unpoison(name: str, table: str) -> None:
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text(f"DROP TRIGGER {name} ON {table}"))
    else:
        db.session.execute(text(f"DROP TRIGGER {name}"))
    db.session.commit()


def bulk_history(chats: int = 3000, messages_per_chat: int = 2, active: int = 1000) -> None:
    """A realistic history for query plans: many ended (and already purged) chats, their texts, purged texts
    outside chats, and active chats whose deadlines are a day away; then ANALYZE, so the planner judges as
    it would in production."""
    from datetime import timedelta

    from webapp.models import Chat, Message, utcnow

    now = utcnow()
    old = now - timedelta(days=400)
    chat_rows = [
        {"a_number": f"+4477009{i:05d}", "b_number": f"+4477008{i:05d}", "proxy_number": "+447700900001",
         "status": "ended", "ended_reason": "api", "created_at": old, "ended_at": old, "last_activity_at": old,
         "expires_at": old, "idle_at": None, "purged_at": old, "unread": 0}
        for i in range(chats)
    ]
    db.session.execute(Chat.__table__.insert(), chat_rows)
    later = now + timedelta(days=1)
    chat_rows = [
        {"a_number": f"+4477007{i:05d}", "b_number": f"+4477006{i:05d}", "proxy_number": "+447700900002",
         "status": "active", "created_at": now, "last_activity_at": now, "expires_at": later,
         "idle_timeout": 86400, "idle_at": later, "unread": 0}
        for i in range(active)
    ]
    db.session.execute(Chat.__table__.insert(), chat_rows)
    first = db.session.scalar(text("SELECT MIN(id) FROM chats WHERE purged_at IS NOT NULL"))
    message_rows = [
        {"chat_id": (first + i // messages_per_chat) if i % 5 else None, "direction": "in", "kind": "sms",
         "from_number": "+447700900123", "to_number": "+447700900001", "text": "(removed after 30 days)",
         "status": "received", "attempts": 0, "created_at": old, "updated_at": old, "purged_at": old}
        for i in range(chats * messages_per_chat)
    ]
    db.session.execute(Message.__table__.insert(), message_rows)
    db.session.commit()
    with db.engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()


def plan(sql: str, **params: Any) -> str:
    """The database's plan for `sql`, as text (PostgreSQL's EXPLAIN, SQLite's EXPLAIN QUERY PLAN)."""
    if db.engine.dialect.name == "postgresql":
        out = "\n".join(db.session.scalars(text("EXPLAIN " + sql), params))
    else:
        out = "\n".join(str(r[-1]) for r in db.session.execute(text("EXPLAIN QUERY PLAN " + sql), params))
    db.session.rollback()
    return out
