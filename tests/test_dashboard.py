"""Dashboard pages and fragments, server side: pairing, lists, transcripts, unrouted, numbers, simulator."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from sqlalchemy import select

from webapp import outbox, services
from webapp.dashboard.auth import create_operator
from webapp.extensions import db, socketio
from webapp.models import Chat, Message
from webapp.services.chats import validate_chat_request

PASSWORD = "correct horse battery"
A, B, C = "+447700900111", "+447700900222", "+447700900333"
CSRF_RE = re.compile(r'name="csrf-token" content="([^"]+)"')


@pytest.fixture
def client(app: Flask):
    client = app.test_client()
    create_operator("dispatcher", PASSWORD)
    token = CSRF_RE.search(client.get("/login").text).group(1)
    resp = client.post("/login", data={"name": "dispatcher", "password": PASSWORD, "csrf_token": token})
    assert resp.status_code == 302
    client.csrf = CSRF_RE.search(client.get("/").text).group(1)
    return client


def htmx(client, url: str, data: dict | None = None):
    headers = {"HX-Request": "true", "X-CSRFToken": client.csrf}
    if data is None:
        return client.get(url, headers=headers)
    return client.post(url, data=data, headers=headers)


def pair(a: str = A, b: str = B, **labels) -> Chat:
    return services.start_chat(validate_chat_request(a, b, **labels), created_by="test")


def inbound(sender: str, proxy: str, text: str, mid: str) -> None:
    services.receive_sms({"msisdn": sender.lstrip("+"), "to": proxy.lstrip("+"), "text": text, "messageId": mid})


def deliver_everything(app: Flask) -> None:
    outbox.drain_once()
    app.extensions["sms_gateway"].flush_receipts(app)


# ------------------------------------------------------------------ pairing form


def test_pair_form_shows_errors_next_to_the_field_and_keeps_what_was_typed(client):
    resp = htmx(client, "/chats", {"a": "07700 900111", "b": "12", "a_label": "Customer", "reference": "R-9"})
    assert resp.status_code == 422
    html = resp.text
    assert 'id="pair-b-error"' in html and "not a possible phone number" in html
    assert 'value="07700 900111"' in html and 'value="Customer"' in html and 'value="R-9"' in html
    assert 'id="pair-a-error"' not in html
    assert db.session.scalar(select(Chat.id)) is None


@pytest.mark.parametrize(
    ("form", "field", "text"),
    [
        ({"a": "", "b": B}, "a", "a phone number is required"),
        ({"a": A, "b": A}, "b", "same number"),
        ({"a": A, "b": "+447700900001"}, "b", "one of our proxy numbers"),
        ({"a": A, "b": B, "a_label": "x" * 61}, "a_label", "longer than 60"),
        ({"a": A, "b": B, "reference": "r" * 121}, "reference", "longer than 120"),
    ],
)
def test_pair_form_uses_the_api_rules(client, form, field, text):
    resp = htmx(client, "/chats", form)
    assert resp.status_code == 422
    error = re.search(rf'id="pair-{field}-error">([^<]+)<', resp.text)
    assert error and text in error.group(1)


def test_pairing_through_the_form_starts_a_chat_by_this_operator(client):
    resp = htmx(client, "/chats", {"a": A, "b": "07700 900222", "a_label": "Customer", "b_label": "Driver"})
    assert resp.status_code == 200 and "Chat <a" in resp.text and "started on" in resp.text
    assert 'value="' + A + '"' not in resp.text  # a fresh, empty form for the next pairing
    chat = db.session.scalar(select(Chat))
    assert (chat.a_number, chat.b_number, chat.created_by) == (A, B, "dispatcher")
    assert [m.kind for m in db.session.scalars(select(Message))] == ["intro", "intro"]


def test_pairing_without_htmx_redirects_with_a_notice(client):
    resp = client.post("/chats", data={"a": A, "b": B, "csrf_token": client.csrf})
    assert resp.status_code == 302
    assert "Chat 1 started" in client.get("/").text


def test_no_free_number_is_shown_clearly_in_the_form(client):
    for other in ("+447700900401", "+447700900402", "+447700900403"):  # A on all three proxy numbers
        pair(A, other)
    resp = htmx(client, "/chats", {"a": A, "b": B})
    assert resp.status_code == 422
    assert 'id="pair-error"' in resp.text
    assert "Person A (+44 •••• ••01 11) is already in a chat on every proxy number" in resp.text


# ------------------------------------------------------------------ chats list


def test_chats_list_masks_numbers_by_default(client):
    pair(A, B, a_label="Customer", b_label="Driver", reference="RIDE-1")
    html = client.get("/").text
    assert "+44 •••• ••01 11" in html and "+44 •••• ••02 22" in html
    assert "900111" not in html and "900222" not in html
    assert "Customer" in html and "RIDE-1" in html
    assert "+44 7700 900001" in html  # our own proxy number is shown in full


@pytest.mark.parametrize("app_overrides", [{"MASK_NUMBERS_IN_UI": False}])
def test_numbers_can_be_shown_unmasked(client):
    pair(A, B)
    assert "+44 7700 900111" in client.get("/").text


def test_search_by_label_reference_and_number(client):
    pair(A, B, a_label="Customer", reference="RIDE-77")
    pair(C, "+447700900444", a_label="Courier", reference="PARCEL-5")
    assert "RIDE-77" in htmx(client, "/fragments/chats?q=ride").text
    assert "PARCEL-5" not in htmx(client, "/fragments/chats?q=ride").text
    assert "PARCEL-5" in htmx(client, "/fragments/chats?q=courier").text
    found = htmx(client, "/fragments/chats?q=07700 900333").text  # a national number finds its chat
    assert "PARCEL-5" in found and "RIDE-77" not in found
    assert "No chat, active or ended, matches" in htmx(client, "/fragments/chats?q=nothing-here").text
    assert "No chat, active or ended, matches" in htmx(client, "/fragments/chats?q=%25").text  # % is literal


def test_chats_list_paginates_and_has_an_ended_tab(client):
    for i in range(23):
        pair(f"+4477009005{i:02d}", f"+4477009006{i:02d}", reference=f"REF-{i:02d}")
    first = htmx(client, "/fragments/chats").text
    second = htmx(client, "/fragments/chats?page=2").text
    assert "Page 1 of 2" in first and "REF-22" in first and "REF-00" not in first
    assert "REF-00" in second and "REF-22" not in second
    services.end_chat(1)
    ended = htmx(client, "/fragments/chats?tab=ended").text
    assert "REF-00" in ended and "REF-01" not in ended


def test_unread_and_attention_markers(client, app):
    chat = pair(A, B)
    deliver_everything(app)
    inbound(A, chat.proxy_number, "Where are you?", "in-1")
    html = client.get("/").text
    assert "1 new" in html
    relay = db.session.scalar(select(Message).where(Message.kind == "relay"))
    relay.status = "failed"
    db.session.commit()
    assert "1 failed" in client.get("/").text
    # opening the chat marks it read
    assert htmx(client, f"/chats/{chat.id}/read", {}).status_code == 204
    assert "1 new" not in client.get("/").text


# ------------------------------------------------------------------ chat page


def test_chat_page_shows_a_conversation_with_delivery_states(client, app):
    chat = pair(A, B, a_label="Customer", b_label="Driver")
    outbox.drain_once()
    inbound(A, chat.proxy_number, "I'm at the corner", "in-1")
    inbound(B, chat.proxy_number, "Two minutes", "in-2")
    html = client.get(f"/chats/{chat.id}").text
    assert html.count('class="entry system"') == 2  # the two introductions, set apart
    assert re.search(r'class="entry from-a".*?I&#39;m at the corner.*?data-status="queued"', html, re.S)
    assert re.search(r'class="entry from-b".*?Two minutes', html, re.S)
    assert 'data-status="submitted"' in html  # introductions were sent
    deliver_everything(app)
    relay = db.session.scalar(select(Message).where(Message.kind == "relay", Message.side == "b"))
    # the relay's state shows inside the line of the message it relays, fetched by either id
    line = htmx(client, f"/chats/{chat.id}/messages/{relay.id}").text
    assert "I&#39;m at the corner" in line and 'data-status="delivered"' in line
    assert f'id="entry-{relay.source_id}"' in line
    assert htmx(client, f"/chats/{chat.id}/messages/9999").status_code == 404


def test_message_text_is_escaped_everywhere(client, app):
    chat = pair(A, B, a_label="<b>Cust</b>")
    evil = '<img src=x onerror=alert(1)><script>alert(2)</script>'
    inbound(A, chat.proxy_number, evil, "in-1")
    inbound("+447700900999", chat.proxy_number, evil, "in-2")  # unrouted
    pages = [
        client.get(f"/chats/{chat.id}").text,
        htmx(client, f"/chats/{chat.id}/transcript").text,
        client.get("/").text,
        client.get("/unrouted").text,
        client.get("/simulator/").text,
        htmx(client, "/simulator/handsets/447700900222/thread").text,
    ]
    for html in pages:
        assert "<img src=x" not in html and "<script>alert" not in html and "<b>Cust" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;" in pages[0]


def test_ending_a_chat_from_its_page(client):
    chat = pair(A, B)
    page = client.get(f"/chats/{chat.id}").text
    assert 'data-confirm="End chat #1?' in page
    resp = client.post(f"/chats/{chat.id}/end", data={"csrf_token": client.csrf})
    assert resp.status_code == 302 and resp.headers["Location"] == f"/chats/{chat.id}"
    db.session.refresh(chat)
    assert (chat.status, chat.ended_reason) == ("ended", "operator")
    header = htmx(client, f"/chats/{chat.id}/header").text
    # says who ended it: the signed-in dispatcher, by name
    assert "ended by dispatcher dispatcher" in header and 'id="end-chat"' not in header
    again = client.post(f"/chats/{chat.id}/end", data={"csrf_token": client.csrf}, follow_redirects=True)
    assert "already ended" in again.text
    assert client.post("/chats/999/end", data={"csrf_token": client.csrf}).status_code == 404


def test_live_events_reach_the_dashboard_socket(app, client):
    live = socketio.test_client(app, flask_test_client=client)
    chat = pair(A, B)
    outbox.drain_once()
    inbound(A, chat.proxy_number, "hello", "in-1")
    app.extensions["sms_gateway"].flush_receipts(app)
    events = live.get_received()
    assert {"chats_changed", "chat_changed", "message_status"} <= {e["name"] for e in events}
    delivered = [e["args"][0] for e in events if e["name"] == "message_status"]
    assert {"chat_id": chat.id, "id": 3, "status": "delivered"} not in delivered  # relay 3 not sent yet
    assert all(set(d) == {"chat_id", "id", "status"} for d in delivered)  # doorbells carry ids, no text
    services.end_chat(chat.id)
    assert any(e["name"] == "chats_changed" and e["args"][0]["change"] == "ended" for e in live.get_received())


# ------------------------------------------------------------------ unrouted and numbers


def test_unrouted_view_lists_texts_from_strangers(client):
    inbound("+447700900999", "+447700900001", "Is anyone there?", "in-1")
    html = client.get("/unrouted").text
    assert "Is anyone there?" in html and "+44 •••• ••09 99" in html and "+44 7700 900001" in html
    assert re.search(r"Is anyone there\?.*?<td>sent</td>", html, re.S)  # auto-reply queued
    assert 'id="nav-unrouted" class="badge "' in html  # the nav badge counts it


def test_numbers_view_shows_load_and_warns_when_capacity_is_low(client):
    html = client.get("/numbers").text
    assert "+44 7700 900001" in html and "warning" not in html
    pair(A, "+447700900401")
    pair(A, "+447700900402")
    html = htmx(client, "/fragments/numbers").text
    assert "Free capacity is low" in html
    assert re.search(r'<span class="value">2</span><span class="label">active chats', html)
    pair(A, "+447700900403")
    assert "cannot be paired again" in htmx(client, "/fragments/numbers").text


# ------------------------------------------------------------------ simulator


def test_simulator_reply_enters_through_the_webhook_and_is_relayed(client, app):
    chat = pair(A, B)
    outbox.drain_once()
    page = client.get("/simulator/").text
    assert "Handset 1" in page and "You&#39;re now connected" in page  # the introduction reached the phone
    resp = htmx(client, "/simulator/handsets/447700900111/send", {"to": chat.proxy_number, "text": "On my way"})
    assert resp.status_code == 200 and "On my way" in resp.text
    msg = db.session.scalar(select(Message).where(Message.direction == "in"))
    assert (msg.chat_id, msg.from_number, msg.provider_id[:3]) == (chat.id, A, "SIM")
    outbox.drain_once()
    assert "On my way" in htmx(client, "/simulator/handsets/447700900222/thread").text


def test_simulator_refuses_bad_input(client):
    empty = htmx(client, "/simulator/handsets/447700900111/send", {"to": "+447700900001", "text": " "})
    assert empty.status_code == 422 and "Type a message" in empty.text
    wrong = htmx(client, "/simulator/handsets/447700900111/send", {"to": "+447700900999", "text": "hi"})
    assert wrong.status_code == 422 and "proxy numbers" in wrong.text
    assert htmx(client, "/simulator/handsets/abc/thread").status_code == 404


@pytest.mark.parametrize(
    "app_overrides",
    [{"SMS_GATEWAY": "vonage", "VONAGE_API_KEY": "k", "VONAGE_API_SECRET": "s", "WEBHOOK_TOKEN": "t" * 32}],
)
def test_simulator_exists_only_with_the_simulated_gateway(client):
    assert client.get("/simulator/").status_code == 404
    assert "Simulator" not in client.get("/").text


def test_simulated_gateway_reports_delivery(app):
    chat = pair(A, B)
    outbox.drain_once()
    assert app.extensions["sms_gateway"].flush_receipts(app) == 2
    states = set(db.session.scalars(select(Message.status).where(Message.chat_id == chat.id)))
    assert states == {"delivered"}


@pytest.mark.parametrize("method", ["sha256", "md5hash"])
@pytest.mark.parametrize("app_overrides", [{"VONAGE_SIGNATURE_SECRET": "sig-secret-123"}])
def test_simulator_signs_its_webhook_like_vonage_when_a_secret_is_set(app, client, method):
    app.config["VONAGE_SIGNATURE_METHOD"] = method
    chat = pair(A, B)
    # an unsigned webhook is refused...
    unsigned = client.post("/webhooks/inbound-sms", data={"msisdn": A[1:], "to": chat.proxy_number[1:], "text": "x"})
    assert unsigned.status_code == 401
    # ...but the simulator's reply passes the real signature check
    resp = htmx(client, "/simulator/handsets/447700900111/send", {"to": chat.proxy_number, "text": "Signed hello"})
    assert resp.status_code == 200, resp.text
    assert db.session.scalar(select(Message.text).where(Message.direction == "in")) == "Signed hello"
