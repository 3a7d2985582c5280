"""The opt-out register: STOP (and synonyms) registers, pairing is refused with 409 naming the field,
START/UNSTOP lifts it with a confirmation SMS, `GET /api/opt-outs` and the dashboard list."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select

from tests.conftest import PROXIES
from webapp.extensions import db
from webapp.models import AuditEvent, Chat, OptOut

from .conftest import STRANGER, A, B, C, D, htmx


@pytest.mark.parametrize("word", ["STOP", "stop", "Unsubscribe", "CANCEL.", " end ", "QUIT!", "STOPALL"])
def test_stop_in_a_chat_registers_the_sender_and_pairing_them_is_409_naming_the_field(api, pair, sms, word):
    chat = pair(A, B)
    sms(B, chat["proxy_number"], word)
    assert api("get", f"/api/chats/{chat['id']}").json["ended_reason"] == "opt_out"
    for body, field in (({"a": B, "b": C}, "a"), ({"a": C, "b": B}, "b")):
        resp = api("post", "/api/chats", json=body)
        assert resp.status_code == 409, resp.json
        assert resp.json["field"] == field
        assert "opted out" in resp.json["error"]
    assert db.session.scalar(select(Chat.id).where(Chat.a_number == C)) is None
    numbers = [o["number"] for o in api("get", "/api/opt-outs").json["opt_outs"]]
    assert numbers == [B]


def test_stop_from_outside_any_chat_registers_too(api, sms, sent):
    sms(STRANGER, PROXIES[1], "STOP")
    assert [o["number"] for o in api("get", "/api/opt-outs").json["opt_outs"]] == [STRANGER]
    assert sent() == []  # no auto-reply to a STOP
    assert api("post", "/api/chats", json={"a": A, "b": STRANGER}).json["field"] == "b"


def test_the_register_lists_number_and_time(api, sms):
    sms(STRANGER, PROXIES[0], "STOP")
    sms(C, PROXIES[0], "STOP")
    sms(STRANGER, PROXIES[1], "STOP")  # again: still once
    body = api("get", "/api/opt-outs").json
    assert set(body) == {"opt_outs"}
    assert [o["number"] for o in body["opt_outs"]] == [C, STRANGER]  # newest first
    for entry in body["opt_outs"]:
        assert set(entry) == {"number", "created_at"}
        assert datetime.fromisoformat(entry["created_at"]).tzinfo is not None
    assert api("get", "/api/opt-outs?limit=1").json["opt_outs"][0]["number"] == C
    assert api("get", "/api/opt-outs?limit=0").status_code == 400


@pytest.mark.parametrize("word", ["START", "unstop", "Start!"])
def test_start_to_any_pool_number_lifts_it_with_a_confirmation(api, pair, sms, sent, word):
    chat = pair(A, B)
    sms(B, chat["proxy_number"], "STOP")
    sent()
    other = next(p for p in PROXIES if p != chat["proxy_number"])
    sms(B, other, word)
    out = sent()
    assert [(s["to"], s["from"]) for s in out] == [(B, other)]
    assert "STOP" in out[0]["text"]  # the confirmation says how to opt out again
    assert api("get", "/api/opt-outs").json["opt_outs"] == []
    assert api("post", "/api/chats", json={"a": B, "b": C}).status_code == 201


def test_start_from_someone_who_never_opted_out_is_an_ordinary_text(pair, sms, sent):
    chat = pair(A, B)
    sent()
    sms(A, chat["proxy_number"], "START")
    assert [(s["to"], s["text"]) for s in sent()] == [(B, "START")]  # relayed as written


def test_start_in_another_active_chat_lifts_and_is_not_relayed(api, pair, sms, sent):
    first, second = pair(A, B), pair(A, C)
    sms(A, first["proxy_number"], "STOP")  # ends the first chat; A stays in the second
    sent()
    sms(A, second["proxy_number"], "UNSTOP")
    assert [(s["to"], s["from"]) for s in sent()] == [(A, second["proxy_number"])]  # the confirmation only
    assert api("get", "/api/opt-outs").json["opt_outs"] == []
    line = [m for m in api("get", f"/api/chats/{second['id']}").json["messages"] if m["text"] == "UNSTOP"]
    assert line and line[0]["direction"] == "inbound"


def test_opt_outs_and_lifts_are_in_the_audit_trail(api, pair, sms):
    chat = pair(A, B)
    sms(B, chat["proxy_number"], "STOP")
    sms(B, chat["proxy_number"], "START")
    events = api("get", "/api/audit").json["events"]
    actions = [(e["action"], e["actor"]) for e in events]
    assert ("opt_out.added", "participant:b") in actions
    assert ("opt_out.lifted", "sms") in actions
    assert ("chat.ended", "participant:b") in actions
    assert all(B not in (e["detail"] or "") for e in events)  # masked


def test_a_dispatcher_cannot_text_someone_who_opted_out(api, pair, sms):
    first, second = pair(A, B), pair(A, C)
    sms(A, first["proxy_number"], "STOP")
    resp = api("post", f"/api/chats/{second['id']}/messages", json={"to": "a", "text": "hello"})
    assert resp.status_code == 409 and "opted out" in resp.json["error"]
    assert api("post", f"/api/chats/{second['id']}/messages", json={"to": "b", "text": "hi"}).status_code == 201


def test_two_stops_at_once_register_once(app, sms):
    sms(D, PROXIES[0], "STOP")
    sms(D, PROXIES[1], "stop")
    assert db.session.scalar(select(OptOut.id).where(OptOut.number == D)) is not None
    assert len(list(db.session.scalars(select(OptOut)))) == 1
    assert len(list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == "opt_out.added")))) == 1


# ------------------------------------------------------------------ dashboard


def test_the_pair_form_shows_the_opt_out_next_to_the_field(dispatcher, sms):
    sms(B, PROXIES[0], "STOP")
    resp = htmx(dispatcher, "/chats", {"a": A, "b": "07700 900222", "csrf_token": dispatcher.csrf})
    assert resp.status_code == 422
    assert 'id="pair-b-error"' in resp.text and "opted out" in resp.text
    assert 'value="07700 900222"' in resp.text  # what was typed stays


def test_the_dashboard_lists_opt_outs_masked(dispatcher, sms):
    sms(STRANGER, PROXIES[0], "STOP")
    page = dispatcher.get("/opt-outs").text
    assert "+44 •••• ••09 99" in page
    assert "7700900999" not in page and "7700 900999" not in page
    assert "1 number opted out" in page
