"""Inbound webhooks and relays through the outbox, on the simulated gateway."""

import pytest

from webapp.outbox import drain_once

A, B, C, D = "+447700900111", "+447700900222", "+447700900333", "+447700900444"
STRANGER = "+447700900999"


def pair(client, headers, a, b):
    resp = client.post("/api/chats", json={"a": a, "b": b}, headers=headers)
    assert resp.status_code == 201, resp.json
    return resp.json


def sms(client, sender, proxy, text, message_id, how="json"):
    fields = {"msisdn": sender.lstrip("+"), "to": proxy.lstrip("+"), "text": text, "messageId": message_id,
              "type": "text", "message-timestamp": "2026-11-27 10:00:00"}
    if how == "json":
        return client.post("/webhooks/inbound-sms", json=fields)
    if how == "form":
        return client.post("/webhooks/inbound-sms", data=fields)
    return client.get("/webhooks/inbound-sms", query_string=fields)


@pytest.fixture
def quiet(gateway):
    """Send what is queued (introductions) and forget it, so a test sees only what it causes."""

    def flush():
        drain_once()
        gateway.sent.clear()

    return flush


@pytest.mark.parametrize("how", ["json", "form", "get"])
def test_a_text_is_relayed_to_the_other_party_from_the_proxy(client, api_headers, gateway, quiet, how):
    chat = pair(client, api_headers, A, B)
    quiet()
    resp = sms(client, A, chat["proxy_number"], "Where are you? 🚕", "m-1", how)
    assert resp.status_code == 204
    assert resp.data == b""
    assert gateway.sent == []  # nothing is sent inside the request: the outbox does it
    drain_once()
    [sent] = gateway.sent
    assert (sent["to"], sent["from"], sent["text"]) == (B, chat["proxy_number"], "Where are you? 🚕")


def test_three_chats_sharing_people_and_numbers_never_cross(client, api_headers, gateway, quiet):
    ab = pair(client, api_headers, A, B)
    ac = pair(client, api_headers, A, C)
    db_ = pair(client, api_headers, D, B)
    assert ab["proxy_number"] != ac["proxy_number"]  # A is in both: different numbers
    assert ab["proxy_number"] != db_["proxy_number"]  # B is in both
    quiet()

    sends = [
        (A, ab, "A to B"), (B, ab, "B to A"),
        (A, ac, "A to C"), (C, ac, "C to A"),
        (D, db_, "D to B"), (B, db_, "B to D"),
    ]
    for i, (sender, chat, text) in enumerate(sends):
        assert sms(client, sender, chat["proxy_number"], text, f"x-{i}").status_code == 204
    drain_once()

    expected = {
        "A to B": (B, ab), "B to A": (A, ab),
        "A to C": (C, ac), "C to A": (A, ac),
        "D to B": (B, db_), "B to D": (D, db_),
    }
    assert len(gateway.sent) == len(expected)
    for sent in gateway.sent:
        recipient, chat = expected[sent["text"]]
        assert sent["to"] == recipient, sent["text"]
        assert sent["from"] == chat["proxy_number"], sent["text"]

    for chat in (ab, ac, db_):
        messages = client.get(f"/api/chats/{chat['id']}", headers=api_headers).json["messages"]
        texts = sorted(m["text"] for m in messages if m["kind"] in ("sms", "relay"))
        own = sorted(t for t, (_, c) in expected.items() if c is chat for _ in (0, 1))
        assert texts == own


def test_duplicate_message_id_is_acknowledged_and_relayed_once(client, api_headers, gateway, quiet):
    chat = pair(client, api_headers, A, B)
    quiet()
    for _ in range(3):
        assert sms(client, A, chat["proxy_number"], "once", "dup-1").status_code == 204
    drain_once()
    assert [s["text"] for s in gateway.sent] == ["once"]


def test_a_stranger_is_stored_as_unrouted_and_auto_replied_once(client, api_headers, gateway, quiet, app):
    from webapp.extensions import db
    from webapp.models import Message

    pair(client, api_headers, A, B)
    quiet()
    proxy = "+447700900001"
    assert sms(client, STRANGER, proxy, "hello?", "s-1").status_code == 204
    assert sms(client, STRANGER, proxy, "anyone?", "s-2").status_code == 204
    drain_once()
    unrouted = db.session.query(Message).filter_by(status="unrouted").all()
    assert sorted(m.text for m in unrouted) == ["anyone?", "hello?"]
    assert all(m.chat_id is None for m in unrouted)
    # one polite auto-reply from the proxy number, not one per message; nothing reaches A or B
    assert gateway.sent == [
        {"to": STRANGER, "from": proxy, "text": "This number is not in an active conversation.",
         "client_ref": gateway.sent[0]["client_ref"]}
    ]


def test_auto_reply_can_be_turned_off(tmp_path):
    from tests.conftest import app_config
    from webapp import create_app, prepare_database

    app = create_app(app_config(tmp_path, AUTO_REPLY=False))
    prepare_database(app)
    with app.app_context():
        assert sms(app.test_client(), STRANGER, "+447700900001", "hi", "q-1").status_code == 204
        drain_once()
        assert app.extensions["sms_gateway"].sent == []


def test_after_ending_texts_are_unrouted(client, api_headers, gateway, quiet):
    chat = pair(client, api_headers, A, B)
    client.post(f"/api/chats/{chat['id']}/end", headers=api_headers)
    quiet()
    assert sms(client, A, chat["proxy_number"], "still there?", "e-1").status_code == 204
    drain_once()
    assert [s["to"] for s in gateway.sent] == [A]  # only the auto-reply, back to A
    assert B not in {s["to"] for s in gateway.sent}


def test_the_right_sender_on_the_wrong_proxy_is_unrouted(client, api_headers, gateway, quiet):
    chat = pair(client, api_headers, A, B)
    quiet()
    other_proxy = next(p for p in ("+447700900001", "+447700900002") if p != chat["proxy_number"])
    assert sms(client, A, other_proxy, "wrong door", "w-1").status_code == 204
    drain_once()
    assert B not in {s["to"] for s in gateway.sent}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"to": "447700900001", "text": "x"}, "msisdn"),
        ({"msisdn": "447700900111", "text": "x"}, "to"),
        ({"msisdn": "not-a-number", "to": "447700900001", "text": "x"}, "msisdn"),
    ],
)
def test_webhook_without_usable_numbers_is_a_clear_400(client, fields, field):
    resp = client.post("/webhooks/inbound-sms", data=fields)
    assert resp.status_code == 400
    assert resp.json["field"] == field


def test_a_webhook_before_any_chat_exists_is_stored_not_an_error(client):
    resp = client.post("/webhooks/inbound-sms", data={"msisdn": "447700900111", "to": "447700900001", "text": "hi"})
    assert resp.status_code == 204
