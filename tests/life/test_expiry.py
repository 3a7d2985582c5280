"""Expiry: a chat's time limit (`expires_in`, CHAT_TTL_SECONDS) and idle deadline (`idle_timeout`,
CHAT_IDLE_SECONDS), ended by the real scheduled job with the end notice to both parties."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, update

from tests.conftest import PROXIES
from webapp.extensions import db
from webapp.jobs import Scheduler, default_jobs, run_once
from webapp.models import AuditEvent, Chat, Message, utcnow
from webapp.services import expiry

from .conftest import A, B, C, D, bulk_history, plan, poison, unpoison

YEAR = 31_536_000


# ------------------------------------------------------------------ the API contract


@pytest.mark.parametrize("field", ["expires_in", "idle_timeout"])
@pytest.mark.parametrize("value", [59, 0, -60, YEAR + 1, "soon", 90.5, True, [60], {"s": 60}])
def test_a_lifetime_outside_a_minute_to_a_year_is_400_naming_the_field(api, field, value):
    resp = api("post", "/api/chats", json={"a": A, "b": B, field: value})
    assert resp.status_code == 400, resp.json
    assert resp.json["field"] == field
    assert field in resp.json["error"]
    assert db.session.scalar(select(Chat.id)) is None  # nothing was created


@pytest.mark.parametrize("value", [60, 3600, YEAR])
def test_lifetimes_at_the_bounds_are_accepted(api, pair, value):
    before = utcnow()
    chat = pair(A, B, expires_in=value, idle_timeout=value)
    expires_at = datetime.fromisoformat(chat["expires_at"])
    assert expires_at.tzinfo is not None
    assert before + timedelta(seconds=value) <= expires_at <= utcnow() + timedelta(seconds=value)
    assert chat["idle_timeout"] == value
    # the same in GET and in the list
    assert api("get", f"/api/chats/{chat['id']}").json["expires_at"] == chat["expires_at"]
    assert api("get", "/api/chats").json["chats"][0]["idle_timeout"] == value


def test_without_lifetimes_or_defaults_a_chat_never_expires(pair):
    chat = pair()
    assert chat["expires_at"] is None and chat["idle_timeout"] is None
    assert chat["idle_deadline"] is None


@pytest.mark.config(CHAT_TTL_SECONDS=7200, CHAT_IDLE_SECONDS=900)
def test_defaults_come_from_the_configuration_and_the_request_wins(pair):
    default = pair(A, B)
    assert default["idle_timeout"] == 900
    left = datetime.fromisoformat(default["expires_at"]) - datetime.fromisoformat(default["created_at"])
    assert left == timedelta(seconds=7200)
    chosen = pair(C, D, expires_in=600, idle_timeout=120)
    assert chosen["idle_timeout"] == 120
    left = datetime.fromisoformat(chosen["expires_at"]) - datetime.fromisoformat(chosen["created_at"])
    assert left == timedelta(seconds=600)


def test_the_legacy_endpoint_takes_lifetimes_too(api):
    resp = api("post", "/chat", data={"userANumber": A, "userBNumber": B, "expires_in": "3600"})
    assert resp.status_code == 201 and resp.json["expires_at"] is not None
    bad = api("post", "/chat", data={"userANumber": C, "userBNumber": D, "idle_timeout": "5"})
    assert bad.status_code == 400 and bad.json["field"] == "idle_timeout"


# ------------------------------------------------------------------ the real background job


def _wait_ended(chat_id: int, within: float) -> Chat:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        db.session.rollback()
        chat = db.session.get(Chat, chat_id, populate_existing=True)
        if chat.status == "ended":
            return chat
        time.sleep(0.1)
    raise AssertionError(f"chat {chat_id} did not end within {within} s")


@pytest.fixture
def scheduler(app):
    """The scheduler every server runs (webapp/background.py), with the default jobs, in its own thread."""
    running = Scheduler(app)
    running.start()
    yield running
    running.stop()


@pytest.mark.config(CHAT_TTL_SECONDS=2)
def test_a_chat_ends_at_its_time_limit_by_the_background_job(pair, scheduler, sent):
    chat = pair(A, B, a_label="Customer", b_label="Driver")
    ended = _wait_ended(chat["id"], within=2 + 15)
    assert ended.ended_reason == "expired"
    assert ended.ended_by == "system"
    lateness = (ended.ended_at - ended.expires_at).total_seconds()
    assert 0 <= lateness < 15, lateness
    # both parties get the end notice from the proxy number
    notices = [s for s in sent() if "conversation has ended" in s["text"]]
    assert sorted(s["to"] for s in notices) == [A, B]
    assert {s["from"] for s in notices} == {chat["proxy_number"]}
    # its routes are free: the same two people can be paired again on the same number
    again = pair(A, B)
    assert again["proxy_number"] == chat["proxy_number"]


@pytest.mark.config(CHAT_IDLE_SECONDS=3)
def test_a_quiet_chat_ends_after_its_idle_timeout_and_texts_keep_it_open(pair, sms, scheduler, sent):
    chat = pair(A, B)
    proxy = chat["proxy_number"]
    last_text = None
    for i in range(3):  # a text every 1.5 s keeps it open for 4.5 s, past its first deadline
        time.sleep(1.5)
        sms(A if i % 2 == 0 else B, proxy, f"still here {i}")
        last_text = utcnow()
        db.session.rollback()
        assert db.session.get(Chat, chat["id"], populate_existing=True).status == "active"
    ended = _wait_ended(chat["id"], within=3 + 15)
    assert ended.ended_reason == "idle"
    assert (ended.ended_at - last_text).total_seconds() >= 3 - 0.5  # never before its (moved) deadline
    notices = [s for s in sent() if "conversation has ended" in s["text"]]
    assert sorted(s["to"] for s in notices) == [A, B]


def test_every_inbound_path_moves_the_idle_deadline(api, pair, sms):
    """The hot path (a routed text) and the general path (an empty text, a multipart set) both move it."""
    chat = pair(A, B, idle_timeout=600)
    first = datetime.fromisoformat(api("get", f"/api/chats/{chat['id']}").json["idle_deadline"])
    for params in ({"body": "hello"}, {"body": " "}):
        time.sleep(0.05)
        sms(A, chat["proxy_number"], params["body"])
        moved = datetime.fromisoformat(api("get", f"/api/chats/{chat['id']}").json["idle_deadline"])
        assert moved > first
        first = moved
    for part in (1, 2):
        sms(B, chat["proxy_number"], f"part {part} ", **{"concat-ref": "7", "concat-total": "2",
                                                        "concat-part": str(part)})
    moved = datetime.fromisoformat(api("get", f"/api/chats/{chat['id']}").json["idle_deadline"])
    assert moved > first


def test_a_dispatcher_message_does_not_keep_a_chat_open(api, pair):
    chat = pair(A, B, idle_timeout=600)
    before = api("get", f"/api/chats/{chat['id']}").json["idle_deadline"]
    assert api("post", f"/api/chats/{chat['id']}/messages", json={"to": "a", "text": "hi"}).status_code == 201
    assert api("get", f"/api/chats/{chat['id']}").json["idle_deadline"] == before


def _make_due(chat_id: int, column: str = "expires_at") -> None:
    db.session.execute(update(Chat).where(Chat.id == chat_id).values({column: utcnow() - timedelta(seconds=1)}))
    db.session.commit()


def test_a_time_limit_wins_over_an_idle_deadline_that_passed_too(pair, app):
    chat = pair(A, B, expires_in=60, idle_timeout=60)
    _make_due(chat["id"], "expires_at")
    _make_due(chat["id"], "idle_at")
    assert run_once(app, ["expire-chats"]) == {"expire-chats": True}
    assert db.session.get(Chat, chat["id"], populate_existing=True).ended_reason == "expired"


def test_a_chat_ended_meanwhile_or_with_a_moved_deadline_is_left_alone(pair, app, sms):
    ended, moved = pair(A, B, expires_in=60), pair(C, D, idle_timeout=60)
    _make_due(ended["id"])
    _make_due(moved["id"], "idle_at")
    assert expiry.due_chat_ids(utcnow()) == sorted([ended["id"], moved["id"]])
    db.session.rollback()
    # between the job's look-up and its write: one chat is ended by a dispatcher, the other gets a text
    from webapp.services import end_chat

    end_chat(ended["id"], reason="api", actor="api")
    sms(C, moved["proxy_number"], "here")
    assert expiry._end_one(ended["id"], utcnow()) is False
    assert expiry._end_one(moved["id"], utcnow()) is False
    assert db.session.get(Chat, ended["id"], populate_existing=True).ended_reason == "api"
    assert db.session.get(Chat, moved["id"], populate_existing=True).status == "active"


def test_one_chat_that_cannot_end_does_not_stop_the_others(app, pair, monkeypatch):
    monkeypatch.setattr(expiry, "RETRY_FAILED_AFTER", 0.0)
    chats = [pair(a, b, expires_in=60) for a, b in ((A, B), (C, D), ("+447700900555", "+447700900666"))]
    for chat in chats:
        _make_due(chat["id"])
    broken = chats[1]["id"]
    poison("no_end", "chats", f"OLD.id = {broken}")
    jobs = default_jobs(app)
    app.extensions["jobs"] = jobs
    assert run_once(app, ["expire-chats"]) == {"expire-chats": False}  # reported, not swallowed
    status = {c["id"]: db.session.get(Chat, c["id"], populate_existing=True).status for c in chats}
    assert status == {chats[0]["id"]: "ended", broken: "active", chats[2]["id"]: "ended"}
    health = app.test_client().get("/healthz").json["jobs"]["expire-chats"]
    assert health["failing"] is True and health["last_error"] == "ExpiryIncomplete"
    # nothing half-done for the broken chat: no notices, no audit record of an end
    assert db.session.scalar(
        select(Message.id).where(Message.chat_id == broken, Message.kind == "notice")
    ) is None
    assert db.session.scalar(
        select(AuditEvent.id).where(AuditEvent.chat_id == broken, AuditEvent.action == "chat.ended")
    ) is None
    unpoison("no_end", "chats")
    assert run_once(app, ["expire-chats"]) == {"expire-chats": True}
    assert db.session.get(Chat, broken, populate_existing=True).ended_reason == "expired"


def test_due_chats_are_found_by_index(app, pair):
    """Among thousands of ended chats, the job's look-ups go straight to the active ones by deadline."""
    bulk_history()
    pair(A, B, expires_in=60, idle_timeout=60)
    for column, index in (("expires_at", "ix_chats_status_expires_at"), ("idle_at", "ix_chats_status_idle_at")):
        sql = f"SELECT id FROM chats WHERE status = :s AND {column} <= :now ORDER BY {column} LIMIT 200"
        found = plan(sql, s="active", now=utcnow())
        assert index in found, found


def test_proxies_are_shared_so_expiry_frees_capacity(api, pair, app):
    """With three numbers, a person in three chats cannot be paired again until one of them expires."""
    for other in (B, C, D):
        pair(A, other, expires_in=60)
    refused = api("post", "/api/chats", json={"a": A, "b": "+447700900777"})
    assert refused.status_code == 409
    first = api("get", "/api/chats?status=active").json["chats"][-1]
    _make_due(first["id"])
    assert run_once(app, ["expire-chats"]) == {"expire-chats": True}
    again = api("post", "/api/chats", json={"a": A, "b": "+447700900777"})
    assert again.status_code == 201 and again.json["proxy_number"] in PROXIES


def test_the_dashboard_shows_time_left_and_the_pair_form_offers_the_choices(dispatcher, pair):
    chat = pair(A, B, expires_in=7200, idle_timeout=1800)
    header = dispatcher.get(f"/chats/{chat['id']}/header").text
    assert "Time limit: ends" in header
    assert "in 1 h 59 min" in header or "in 2 h 00 min" in header
    assert "unless someone texts (after 30 minutes of quiet)" in header
    assert f'data-deadline="{chat["expires_at"]}"' in header
    row = dispatcher.get("/fragments/chats").text
    assert "ends <span data-deadline=" in row and "in 29 min" in row  # the sooner one: the idle deadline
    form = dispatcher.get("/").text
    assert 'name="expires_in"' in form and '<option value="7200"' in form and "2 hours" in form
    assert 'name="idle_timeout"' in form and '<option value="1800"' in form and "30 minutes" in form


def test_an_expired_chat_says_so_on_its_page(dispatcher, pair, app):
    chat = pair(A, B, idle_timeout=1800)
    _make_due(chat["id"], "idle_at")
    run_once(app, ["expire-chats"])
    header = dispatcher.get(f"/chats/{chat['id']}/header").text
    assert "ended · ended after 30 minutes without texts" in header
    assert 'id="time-left"' not in header
