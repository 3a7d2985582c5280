"""A failed delivery shows its reason on the chat page and can be resent from there."""

import re

import pytest

from webapp.extensions import db
from webapp.gateway import SendResult
from webapp.models import Message
from webapp.outbox import drain_once

A, B = "+447700900111", "+447700900222"


class Refusing:
    """A gateway that refuses every send as Vonage does for a barred number (not retryable)."""

    name = "refusing"

    def __init__(self) -> None:
        self.sent = []

    def send(self, *, to, sender, text, client_ref):
        self.sent.append(to)
        return SendResult(False, retryable=False, status="7", error="status 7: Number barred")


@pytest.fixture
def operator_client(app, client):
    from webapp.dashboard.auth import create_operator

    create_operator("maria", "correct horse battery")
    page = client.get("/login")
    token = re.search(rb'name="csrf_token" value="([^"]+)"', page.data).group(1).decode()
    resp = client.post("/login", data={"name": "maria", "password": "correct horse battery", "csrf_token": token})
    assert resp.status_code in (302, 303)
    return client


def csrf(client, path):
    return re.search(rb'name="csrf_token" value="([^"]+)"', client.get(path).data).group(1).decode()


def test_a_failed_relay_shows_its_reason_and_can_be_resent(app, operator_client, api_headers):
    working = app.extensions["sms_gateway"]
    chat = operator_client.post("/api/chats", json={"a": A, "b": B}, headers=api_headers).json
    drain_once()
    app.extensions["sms_gateway"] = Refusing()
    operator_client.post(
        "/webhooks/inbound-sms",
        data={"msisdn": A[1:], "to": chat["proxy_number"][1:], "text": "Gate 4", "messageId": "r-1"},
    )
    drain_once()
    relay = db.session.query(Message).filter_by(kind="relay").one()
    assert relay.status == "failed"

    page = operator_client.get(f"/chats/{chat['id']}").get_data(as_text=True)
    assert "Number barred" in page
    assert f'id="resend-{relay.id}"' in page

    app.extensions["sms_gateway"] = working
    working.sent.clear()
    token = csrf(operator_client, f"/chats/{chat['id']}")
    resp = operator_client.post(
        f"/messages/{relay.id}/resend", data={"csrf_token": token, "chat_id": chat["id"]}
    )
    assert resp.status_code in (302, 303)
    drain_once()
    assert [(s["to"], s["text"]) for s in working.sent] == [(B, "Gate 4")]

    page = operator_client.get(f"/chats/{chat['id']}").get_data(as_text=True)
    assert 'id="resend-' not in page  # the line now shows the new attempt...
    assert page.count('id="entry-') == 3  # (two introductions and the text: the resend is in the text's line)
    # ...and keeps the failed one, its reason in words, and who resent it
    attempts = re.findall(r'<li class="attempt[^"]*" data-attempt="(\d)" data-status="(\w+)"', page)
    assert attempts == [("1", "failed"), ("2", "submitted")]
    assert "This number is barred from receiving our texts. (send status 7)" in page
    assert "resent by maria" in page
    # resending the same failure twice is refused
    again = operator_client.post(f"/messages/{relay.id}/resend", data={"csrf_token": token})
    assert again.status_code in (302, 303)
    drain_once()
    assert len(working.sent) == 1


def test_resend_needs_a_csrf_token(operator_client):
    assert operator_client.post("/messages/1/resend").status_code == 400
