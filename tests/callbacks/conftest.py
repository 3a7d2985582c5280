"""Fixtures for the event callback tests: a real HTTP receiver on 127.0.0.1 and an app that sends to it.

- `receiver`: tests/fakes/receiver.py, verifying every signature with SECRET.
- `app` (root fixture) is configured by `app_overrides` here: EVENTS_URL=the receiver, short retry backoff and
  timeout (a test module overrides `events_overrides` to change them). The simulated gateway sends the SMS.
- `deliver()`: drains the outbox and the event sender (and the simulated receipts) until nothing is due.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from tests.conftest import API_TOKEN, PROXIES
from tests.fakes.receiver import Receiver
from webapp import callbacks, outbox
from webapp.extensions import db
from webapp.models import CallbackEvent

SECRET = "whsec-test-0123456789abcdef"
A, B = "+447700900111", "+447700900222"
C, D = "+447700900333", "+447700900444"
HEADERS = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(secret=SECRET) as rx:
        yield rx


@pytest.fixture
def events_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
def app_overrides(receiver, events_overrides) -> dict[str, Any]:
    return {
        "EVENTS_URL": receiver.url,
        "EVENTS_SECRET": SECRET,
        "EVENTS_TIMEOUT_SECONDS": 1.0,
        "EVENTS_RETRY_BASE_SECONDS": 0.05,
        "EVENTS_RETRY_CAP_SECONDS": 0.2,
        "AUTO_REPLY": False,
        **events_overrides,
    }


def events_in_db(**where: Any) -> list[CallbackEvent]:
    query = select(CallbackEvent).order_by(CallbackEvent.id)
    for name, value in where.items():
        query = query.where(getattr(CallbackEvent, name) == value)
    rows = list(db.session.scalars(query))
    db.session.rollback()
    return rows


def pending() -> int:
    return len(events_in_db(status="pending"))


def sms_in_flight() -> int:
    """Outbound SMS still queued or being sent (a retry may still fail and cause an event)."""
    from webapp.models import Message

    n = db.session.scalar(select(func.count()).select_from(Message).where(
        Message.direction == "out", Message.status.in_(("queued", "sending"))))
    db.session.rollback()
    return n or 0


@pytest.fixture
def deliver(app: Flask) -> Callable[..., int]:
    """Send SMS, flush simulated receipts and post events until nothing is pending (or `until` says stop)."""
    gateway = app.extensions["sms_gateway"]

    def _deliver(rounds: int = 300, pause: float = 0.05, sms: bool = True) -> int:
        posted = 0
        for _ in range(rounds):
            if sms:
                outbox.drain_once()
                if hasattr(gateway, "flush_receipts"):  # the simulated gateway's receipts
                    gateway.flush_receipts(app)
            posted += callbacks.drain_once()
            if not pending() and not (sms and sms_in_flight()):
                return posted
            time.sleep(pause)
        raise AssertionError(f"{pending()} event(s) still pending")

    return _deliver


@pytest.fixture
def operator_login(client) -> Callable[[], None]:
    """Sign `client` in to the dashboard as an operator."""
    import re

    from webapp.dashboard.auth import create_operator

    def _login() -> None:
        create_operator("dispatcher", "correct horse battery")
        token = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/login").text).group(1)
        resp = client.post("/login", data={"name": "dispatcher", "password": "correct horse battery",
                                           "csrf_token": token})
        assert resp.status_code == 302

    return _login


@pytest.fixture
def pair(client) -> Callable[..., dict]:
    def _pair(a: str = A, b: str = B, **extra: Any) -> dict:
        resp = client.post("/api/chats", json={"a": a, "b": b, **extra}, headers=HEADERS)
        assert resp.status_code == 201, resp.json
        return resp.json

    return _pair


@pytest.fixture
def text(client) -> Callable[..., Any]:
    """A party texts a proxy number through the inbound webhook."""
    counter = iter(range(10**9))

    def _text(body: str, sender: str = A, to: str = PROXIES[0], **extra: str):
        params = {"msisdn": sender.lstrip("+"), "to": to.lstrip("+"), "text": body, "type": "text",
                  "messageId": f"EV{next(counter):010d}", **extra}
        resp = client.post("/webhooks/inbound-sms", data=params)
        assert resp.status_code == 204, resp.get_data(as_text=True)
        return resp

    return _text
