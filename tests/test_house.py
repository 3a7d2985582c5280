"""The house around the outbox: one vocabulary of states, simulated receipts through the real webhook, HTML
errors for the dashboard, and domain events that reach the dashboards without services knowing them."""

from __future__ import annotations

import json
import re

import pytest
from flask import Flask
from sqlalchemy import select

from webapp import events, outbox, services, states
from webapp.dashboard.auth import create_operator
from webapp.extensions import db
from webapp.models import Message, Receipt
from webapp.services.chats import validate_chat_request

PASSWORD = "correct horse battery"
A, B = "+447700900111", "+447700900222"
CSRF_RE = re.compile(r'name="csrf-token" content="([^"]+)"')


@pytest.fixture
def signed_in(app: Flask):
    client = app.test_client()
    create_operator("dispatcher", PASSWORD)
    token = CSRF_RE.search(client.get("/login").text).group(1)
    assert client.post("/login", data={"name": "dispatcher", "password": PASSWORD,
                                       "csrf_token": token}).status_code == 302
    return client


@pytest.fixture
def app_overrides() -> dict:
    return {"VONAGE_SIGNATURE_SECRET": "simulated-carrier-signs-too", "VONAGE_SIGNATURE_METHOD": "sha256"}


def test_simulated_receipts_arrive_through_the_signed_receipt_webhook(app, client):
    chat = services.start_chat(validate_chat_request(A, B))
    outbox.drain_once()
    assert app.extensions["sms_gateway"].flush_receipts(app) == 2
    intros = db.session.scalars(select(Message).where(Message.chat_id == chat.id)).all()
    assert {m.status for m in intros} == {"delivered"}
    receipts = db.session.scalars(select(Receipt)).all()
    # signed as Vonage signs: the webhook (which refuses anything unsigned here) stored them
    assert len(receipts) == 2 and all("timestamp" in r.payload for r in receipts)
    unsigned = client.post("/webhooks/delivery-receipt", data={"messageId": "X1", "status": "delivered"})
    assert unsigned.status_code == 401


def test_dashboard_not_found_is_a_page_not_json(app, signed_in):
    resp = signed_in.get("/chats/99999")
    assert resp.status_code == 404 and resp.mimetype == "text/html"
    api = signed_in.post("/chat", json={})
    assert api.mimetype == "application/json"  # the tutorial's POST /chat stays JSON


def test_the_browser_gets_the_state_groups_from_the_server(app, signed_in):
    html = signed_in.get("/").text
    content = re.search(r'<meta name="sms-states" content="([^"]+)"', html).group(1)
    groups = json.loads(content.replace("&#34;", '"').replace("&quot;", '"'))
    assert groups["trouble"] == sorted(states.TROUBLE)


def test_services_announce_domain_events_that_the_dashboard_turns_into_live_events(app, monkeypatch):
    seen: list[tuple[str, dict]] = []
    from webapp import live

    monkeypatch.setattr(live, "_emit", lambda event, payload: seen.append((event, payload)))
    heard: list[dict] = []

    def listener(_sender, **data):
        heard.append(data)

    events.chat_created.connect(listener)
    try:
        chat = services.start_chat(validate_chat_request(A, B))
    finally:
        events.chat_created.disconnect(listener)
    assert heard == [{"chat_id": chat.id}]
    assert ("chats_changed", {"chat_id": chat.id, "change": "created"}) in seen


def test_a_failing_listener_never_reaches_the_service(app):
    def broken(_sender, **_data):
        raise RuntimeError("listener bug")

    events.chat_created.connect(broken)
    try:
        chat = services.start_chat(validate_chat_request(A, B))
    finally:
        events.chat_created.disconnect(broken)
    assert chat.id is not None and chat.status == "active"
