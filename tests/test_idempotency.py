"""Idempotency-Key on the API's POSTs: a retry replays the first answer and never does the work twice.

Runs on SQLite and PostgreSQL; the concurrency test sends real concurrent HTTP requests to a served app.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, insert, select
from werkzeug.serving import make_server

from tests.conftest import API_TOKEN
from webapp import idempotency
from webapp.extensions import db
from webapp.models import Chat, IdempotencyKey, Message, utcnow

A, B = "+447700900111", "+447700900222"
BODY = {"a": A, "b": B, "a_label": "Customer", "b_label": "Driver", "reference": "ride-7"}


def post(client, api_headers, key: str | None, body=BODY, path="/api/chats"):
    headers = dict(api_headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(path, json=body, headers=headers)


def count(model) -> int:
    n = db.session.scalar(select(func.count()).select_from(model))
    db.session.rollback()
    return n


def test_a_retry_with_the_same_key_replays_the_first_response_and_does_nothing(client, api_headers):
    first = post(client, api_headers, "key-1")
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    for _ in range(3):
        again = post(client, api_headers, "key-1")
        assert again.status_code == 201
        assert again.get_data() == first.get_data()  # byte for byte: the same chat, the same proxy number
        assert again.headers["Idempotent-Replayed"] == "true"
    assert count(Chat) == 1
    assert count(Message) == 2  # the two introductions, once


def test_the_same_json_written_differently_is_the_same_request(client, api_headers):
    first = post(client, api_headers, "key-2")
    reordered = json.dumps(dict(reversed(list(BODY.items()))), indent=2)
    headers = {**api_headers, "Idempotency-Key": "key-2", "Content-Type": "application/json"}
    again = client.post("/api/chats", data=reordered, headers=headers)
    assert again.status_code == 201 and again.json == first.json


def test_the_same_key_with_another_body_is_422_and_changes_nothing(client, api_headers):
    assert post(client, api_headers, "key-3").status_code == 201
    other = post(client, api_headers, "key-3", {**BODY, "reference": "ride-8"})
    assert other.status_code == 422
    assert other.json["field"] == "Idempotency-Key" and "different request" in other.json["error"]
    # used on another route it is another request too
    assert post(client, api_headers, "key-3", {}, path="/api/chats/1/end").status_code == 422
    assert count(Chat) == 1


def test_without_a_key_each_post_is_its_own_request(client, api_headers):
    assert post(client, api_headers, None).status_code == 201
    assert post(client, api_headers, None).status_code == 201  # a second chat (on another proxy number)
    assert count(Chat) == 2


def test_an_error_answer_is_replayed_too(client, api_headers):
    bad = post(client, api_headers, "key-4", {**BODY, "a": "not a number"})
    assert bad.status_code == 400 and bad.json["field"] == "a"
    again = post(client, api_headers, "key-4", {**BODY, "a": "not a number"})
    assert (again.status_code, again.json) == (400, bad.json) and again.headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize("key", ["", " ", "x" * 256, "naïve", "tab\there"])
def test_a_malformed_key_is_a_clear_400(client, api_headers, key):
    resp = post(client, api_headers, key)
    assert resp.status_code == 400 and resp.json["field"] == "Idempotency-Key"
    assert count(Chat) == 0


def test_ending_a_chat_with_a_key_can_be_retried(client, api_headers):
    chat = post(client, api_headers, None).json
    first = post(client, api_headers, "end-1", None, path=f"/api/chats/{chat['id']}/end")
    again = post(client, api_headers, "end-1", None, path=f"/api/chats/{chat['id']}/end")
    assert first.status_code == again.status_code == 200 and again.json == first.json
    # without the key the second end is a conflict, as before
    assert post(client, api_headers, None, None, path=f"/api/chats/{chat['id']}/end").status_code == 409


def test_the_legacy_endpoint_honours_the_key(client, api_headers):
    body = {"userANumber": A, "userBNumber": B}
    first = client.post("/chat", data=body, headers={**api_headers, "Idempotency-Key": "legacy-1"})
    again = client.post("/chat", data=body, headers={**api_headers, "Idempotency-Key": "legacy-1"})
    assert first.status_code == again.status_code == 201 and again.json == first.json
    assert count(Chat) == 1


def test_every_post_route_of_the_api_is_idempotent(app):
    posts = [rule for rule in app.url_map.iter_rules()
             if "POST" in (rule.methods or ()) and (rule.rule.startswith("/api/") or rule.rule == "/chat")]
    assert posts
    for rule in posts:
        assert getattr(app.view_functions[rule.endpoint], "idempotent", False), f"{rule.rule} lacks @idempotent"


def test_keys_are_kept_24_hours_then_purged(app, client, api_headers):
    first = post(client, api_headers, "key-5")
    assert idempotency.purge_keys(now=utcnow() + timedelta(hours=23, minutes=59)) == 0
    assert post(client, api_headers, "key-5").json == first.json
    assert idempotency.purge_keys(now=utcnow() + timedelta(hours=24, minutes=1)) == 1
    again = post(client, api_headers, "key-5")  # a new request now: a second chat
    assert again.status_code == 201 and again.json["id"] != first.json["id"]


def _claim_row(key: str, body=BODY, path="/api/chats", **values) -> None:
    from flask import Request
    from werkzeug.test import EnvironBuilder

    req = Request(EnvironBuilder(method="POST", path=path, json=body).get_environ())
    db.session.execute(insert(IdempotencyKey).values(key=key, fingerprint=idempotency.fingerprint(req), **values))
    db.session.commit()


def test_a_duplicate_waits_for_the_first_then_gives_up_with_409(client, api_headers, monkeypatch):
    monkeypatch.setattr(idempotency, "WAIT_SECONDS", 0.3)
    _claim_row("busy-1", created_at=utcnow())  # a first request still running
    resp = post(client, api_headers, "busy-1")
    assert resp.status_code == 409 and "still in progress" in resp.json["error"]
    assert count(Chat) == 0


def test_a_claim_left_by_a_request_that_died_before_committing_is_taken_over(client, api_headers):
    _claim_row("dead-1", created_at=utcnow() - timedelta(minutes=5))
    resp = post(client, api_headers, "dead-1")
    assert resp.status_code == 201 and count(Chat) == 1
    assert post(client, api_headers, "dead-1").json == resp.json


def test_work_committed_but_response_lost_is_never_done_again(client, api_headers):
    old = utcnow() - timedelta(minutes=5)
    _claim_row("lost-1", created_at=old, committed_at=old)
    resp = post(client, api_headers, "lost-1")
    assert resp.status_code == 409 and "carried out" in resp.json["error"]
    assert count(Chat) == 0


def test_the_commit_mark_is_written_only_with_the_work(client, api_headers):
    post(client, api_headers, "mark-1")
    for other in ("+447700900501", "+447700900502"):  # A is now in a chat on every proxy number
        assert post(client, api_headers, None, {"a": A, "b": other}).status_code == 201
    refused = post(client, api_headers, "mark-2", {"a": A, "b": "+447700900503"})
    assert refused.status_code == 409  # the pairing was rolled back
    rows = {r.key: r for r in db.session.scalars(select(IdempotencyKey))}
    assert rows["mark-1"].committed_at is not None and rows["mark-1"].response_status == 201
    assert rows["mark-2"].committed_at is None and rows["mark-2"].response_status == 409
    assert count(Chat) == 3


def test_a_server_error_frees_the_key_for_a_retry(client, api_headers, monkeypatch):
    from webapp import services

    real = services.start_chat

    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(services, "start_chat", broken)
    assert post(client, api_headers, "err-1").status_code == 500
    assert count(Chat) == 0
    monkeypatch.setattr(services, "start_chat", real)
    assert post(client, api_headers, "err-1").status_code == 201
    assert count(Chat) == 1


def test_concurrent_duplicates_create_one_chat(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/api/chats"
    headers = {"Authorization": f"Bearer {API_TOKEN}", "Idempotency-Key": "race-1"}
    start = threading.Barrier(8)
    answers: list[requests.Response] = []
    lock = threading.Lock()

    def fire() -> None:
        start.wait()
        resp = requests.post(url, json=BODY, headers=headers, timeout=30)
        with lock:
            answers.append(resp)

    try:
        racers = [threading.Thread(target=fire) for _ in range(8)]
        for t in racers:
            t.start()
        for t in racers:
            t.join(60)
    finally:
        server.shutdown()
    assert [r.status_code for r in answers] == [201] * 8, [r.text for r in answers]
    assert len({r.content for r in answers}) == 1
    assert sum(1 for r in answers if r.headers.get("Idempotent-Replayed")) == 7
    assert count(Chat) == 1
    assert count(Message) == 2
