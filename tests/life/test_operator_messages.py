"""The dispatcher's own messages: `POST /api/chats/<id>/messages` and the compose box on the chat page."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import AuditEvent, Message

from .conftest import A, B, htmx


def test_a_message_to_one_party_goes_from_the_proxy_number(api, pair, sent):
    chat = pair(A, B, a_label="Customer", b_label="Driver")
    sent()  # the introductions
    resp = api("post", f"/api/chats/{chat['id']}/messages", json={"to": "a", "text": "Your driver is 5 minutes late"})
    assert resp.status_code == 201, resp.json
    [message] = resp.json["messages"]
    assert message["kind"] == "operator"
    assert message["sent_by"] == "api"
    assert message["side"] == "a" and message["direction"] == "outbound"
    assert message["text"] == "Your driver is 5 minutes late"
    out = sent()
    assert [(s["to"], s["from"], s["text"]) for s in out] == [
        (A, chat["proxy_number"], "Your driver is 5 minutes late")
    ]
    # the transcript has it, with who sent it
    transcript = api("get", f"/api/chats/{chat['id']}").json["messages"]
    mine = [m for m in transcript if m["kind"] == "operator"]
    assert len(mine) == 1 and mine[0]["sent_by"] == "api" and mine[0]["status"] == "submitted"


def test_a_message_to_both_is_two_sms(api, pair, sent):
    chat = pair(A, B)
    sent()
    resp = api("post", f"/api/chats/{chat['id']}/messages", json={"to": "both", "text": "We are on our way"})
    assert resp.status_code == 201
    assert sorted(m["side"] for m in resp.json["messages"]) == ["a", "b"]
    assert sorted(s["to"] for s in sent()) == [A, B]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to": "a", "text": ""}, "text"),
        ({"to": "a", "text": "   "}, "text"),
        ({"to": "a"}, "text"),
        ({"to": "a", "text": 42}, "text"),
        ({"to": "a", "text": "x" * 1601}, "text"),
        ({"to": "c", "text": "hello"}, "to"),
        ({"to": "", "text": "hello"}, "to"),
        ({"text": "hello"}, "to"),
        ({"to": ["a"], "text": "hello"}, "to"),
    ],
)
def test_bad_input_is_400_naming_the_field(api, pair, body, field):
    chat = pair(A, B)
    resp = api("post", f"/api/chats/{chat['id']}/messages", json=body)
    assert resp.status_code == 400, resp.json
    assert resp.json["field"] == field and resp.json["error"]
    assert db.session.scalar(select(Message.id).where(Message.kind == "operator")) is None


def test_an_ended_chat_takes_no_messages(api, pair):
    chat = pair(A, B)
    api("post", f"/api/chats/{chat['id']}/end")
    resp = api("post", f"/api/chats/{chat['id']}/messages", json={"to": "b", "text": "hello?"})
    assert resp.status_code == 409
    assert "ended" in resp.json["error"]


def test_an_unknown_chat_is_404(api):
    resp = api("post", "/api/chats/999/messages", json={"to": "a", "text": "hello"})
    assert resp.status_code == 404
    assert api("post", "/api/chats/abc/messages", json={"to": "a", "text": "hi"}).status_code == 404


def test_the_api_needs_its_token(client, pair):
    chat = pair(A, B)
    assert client.post(f"/api/chats/{chat['id']}/messages", json={"to": "a", "text": "x"}).status_code == 401


def test_each_message_is_in_the_audit_trail(api, pair):
    chat = pair(A, B)
    api("post", f"/api/chats/{chat['id']}/messages", json={"to": "both", "text": "hello"})
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "message.sent"))
    assert event.actor == "api" and event.chat_id == chat["id"]
    assert "hello" not in event.detail  # the audit trail never carries message text


# ------------------------------------------------------------------ the compose box


def test_the_chat_page_has_a_compose_box_while_the_chat_is_active(dispatcher, pair, api):
    chat = pair(A, B, a_label="Customer", b_label="Driver")
    page = dispatcher.get(f"/chats/{chat['id']}").text
    assert 'id="compose"' in page and 'id="compose-count"' in page
    assert "A · Customer" in page and "B · Driver" in page
    assert "0 characters · 1 SMS" in page
    api("post", f"/api/chats/{chat['id']}/end")
    assert 'id="compose"' not in dispatcher.get(f"/chats/{chat['id']}").text


def test_the_compose_box_sends_as_the_signed_in_dispatcher(dispatcher, pair, api, sent):
    chat = pair(A, B, b_label="Driver")
    sent()
    resp = htmx(dispatcher, f"/chats/{chat['id']}/messages", {"to": "b", "text": "Please wait at gate 2",
                                                               "csrf_token": dispatcher.csrf})
    assert resp.status_code == 200
    assert 'id="compose-sent"' in resp.text and "Sent to Driver" in resp.text
    assert "Please wait at gate 2" not in resp.text  # the box is cleared for the next message
    [out] = sent()
    assert (out["to"], out["from"], out["text"]) == (B, chat["proxy_number"], "Please wait at gate 2")
    [message] = [m for m in api("get", f"/api/chats/{chat['id']}").json["messages"] if m["kind"] == "operator"]
    assert message["sent_by"] == "operator:maria"
    line = dispatcher.get(f"/chats/{chat['id']}/transcript").text
    assert "Dispatcher maria to Driver" in line and "Please wait at gate 2" in line


def test_the_compose_box_keeps_the_text_and_names_the_problem(dispatcher, pair, api):
    chat = pair(A, B)
    resp = htmx(dispatcher, f"/chats/{chat['id']}/messages", {"text": "Where to?", "csrf_token": dispatcher.csrf})
    assert resp.status_code == 422
    assert 'id="compose-to-error"' in resp.text and "Where to?" in resp.text
    resp = htmx(dispatcher, f"/chats/{chat['id']}/messages", {"to": "a", "text": " ", "csrf_token": dispatcher.csrf})
    assert resp.status_code == 422 and 'id="compose-text-error"' in resp.text
    api("post", f"/api/chats/{chat['id']}/end")
    resp = htmx(dispatcher, f"/chats/{chat['id']}/messages", {"to": "a", "text": "late", "csrf_token": dispatcher.csrf})
    assert resp.status_code == 422 and 'id="compose-error"' in resp.text and "has ended" in resp.text


def test_the_compose_box_needs_a_csrf_token_and_a_sign_in(dispatcher, client, pair):
    chat = pair(A, B)
    forged = dispatcher.post(f"/chats/{chat['id']}/messages", data={"to": "a", "text": "hi"})
    assert forged.status_code == 400
    assert client.post(f"/chats/{chat['id']}/messages", data={"to": "a", "text": "hi"}).status_code in (400, 401, 302)
    assert db.session.scalar(select(Message.id).where(Message.kind == "operator")) is None


def test_the_part_count_is_rendered_by_the_server_as_the_browser_counts(app):
    from webapp.dashboard.display import sms_count

    assert sms_count("") == "0 characters · 1 SMS"
    assert sms_count("x" * 160) == "160 characters · 1 SMS"
    assert sms_count("x" * 161) == "161 characters · 2 SMS parts"
    assert sms_count("€" * 80) == "80 characters · 1 SMS"  # an extension character counts twice
    assert sms_count("€" * 81) == "81 characters · 2 SMS parts"
    assert sms_count("ü" * 70) == "70 characters · 1 SMS"  # in the GSM alphabet
    assert sms_count("ł" * 70) == "70 characters (unicode) · 1 SMS"
    assert sms_count("ł" * 71) == "71 characters (unicode) · 2 SMS parts"
