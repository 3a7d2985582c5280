"""The JSON API for the firm's backend, through Flask's test client on a fresh database."""

import pytest

from tests.conftest import PROXIES
from webapp.outbox import drain_once

A, B, C = "+447700900111", "+447700900222", "+447700900333"


def create(client, headers, **body):
    return client.post("/api/chats", json=body, headers=headers)


def test_every_api_route_needs_the_bearer_token(client, api_headers):
    for method, path in [
        ("post", "/api/chats"),
        ("get", "/api/chats"),
        ("get", "/api/chats/1"),
        ("post", "/api/chats/1/end"),
        ("post", "/chat"),
    ]:
        resp = getattr(client, method)(path, json={})
        assert resp.status_code == 401, path
        assert "Bearer" in resp.json["error"]
        wrong = getattr(client, method)(path, json={}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401, path


def test_empty_token_disables_the_api(tmp_path):
    from tests.conftest import app_config
    from webapp import create_app

    app = create_app(app_config(tmp_path, API_TOKEN=""))
    resp = app.test_client().get("/api/chats", headers={"Authorization": "Bearer "})
    assert resp.status_code == 503
    assert "API_TOKEN" in resp.json["error"]


def test_create_chat_returns_201_with_the_chat(client, api_headers):
    resp = create(client, api_headers, a=A, b="07700 900222", a_label="Customer", b_label="Driver", reference="R-1")
    assert resp.status_code == 201
    chat = resp.json
    assert chat["status"] == "active"
    assert chat["a"] == A and chat["b"] == B
    assert chat["proxy_number"] in PROXIES
    assert chat["reference"] == "R-1"
    assert chat["created_at"].endswith("+00:00")
    assert isinstance(chat["id"], int)


def test_pairing_sends_introductions_from_the_proxy_number(client, api_headers, gateway):
    chat = create(client, api_headers, a=A, b=B, a_label="Customer", b_label="Driver").json
    drain_once()
    by_recipient = {s["to"]: s for s in gateway.sent}
    assert set(by_recipient) == {A, B}
    assert all(s["from"] == chat["proxy_number"] for s in gateway.sent)
    assert "your Driver" in by_recipient[A]["text"]  # the label as written (issue 11)
    assert "your Customer" in by_recipient[B]["text"]
    # neither party ever sees the other's number
    assert B[1:] not in by_recipient[A]["text"] and A[1:] not in by_recipient[B]["text"]


def test_unlabelled_parties_get_the_generic_introduction(client, api_headers, gateway):
    create(client, api_headers, a=A, b=B)
    drain_once()
    assert all("your contact" in s["text"] for s in gateway.sent)


def test_legacy_chat_endpoint_accepts_form_and_json(client, api_headers):
    form = client.post("/chat", data={"userANumber": A, "userBNumber": B}, headers=api_headers)
    assert form.status_code == 201
    assert (form.json["a"], form.json["b"]) == (A, B)
    as_json = client.post("/chat", json={"userANumber": C, "userBNumber": B}, headers=api_headers)
    assert as_json.status_code == 201
    bad = client.post("/chat", data={"userANumber": "nope", "userBNumber": B}, headers=api_headers)
    assert bad.status_code == 400
    assert bad.json["field"] == "userANumber"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"b": B}, "a"),
        ({"a": "not a number", "b": B}, "a"),
        ({"a": A, "b": "+44 12"}, "b"),
        ({"a": A, "b": "07700 900111"}, "b"),  # the same person twice
        ({"a": PROXIES[0], "b": B}, "a"),  # a proxy number is not a participant
        ({"a": A, "b": B, "a_label": "x" * 61}, "a_label"),
        ({"a": A, "b": B, "reference": 12}, "reference"),
        ({"a": ["+447700900111"], "b": B}, "a"),
    ],
)
def test_bad_input_names_the_field(client, api_headers, body, field):
    resp = create(client, api_headers, **body)
    assert resp.status_code == 400
    assert resp.json["field"] == field
    assert resp.json["error"]


def test_non_object_json_is_a_clear_400(client, api_headers):
    resp = client.post("/api/chats", data="[1,2]", content_type="application/json", headers=api_headers)
    assert resp.status_code == 400
    assert "JSON object" in resp.json["error"]


def test_no_free_number_is_409_naming_the_fix(client, api_headers):
    for other in ("+447700900501", "+447700900502", "+447700900503"):
        assert create(client, api_headers, a=A, b=other).status_code == 201
    resp = create(client, api_headers, a=A, b="+447700900504")
    assert resp.status_code == 409 and resp.json["field"] == "proxy_number"  # the shape stays
    # a plain sentence naming who blocks (masked) and what to do; no command-line syntax
    assert resp.json["error"] == (
        "Person A (+44 •••• ••01 11) is already in a chat on every proxy number. "
        "End one of their active chats, or ask an admin to add a number to the pool."
    )


def test_one_proxy_number_serves_many_chats(client, api_headers):
    chats = [create(client, api_headers, a=f"+4477009006{i:02d}", b=f"+4477009007{i:02d}").json for i in range(9)]
    per_number = {}
    for chat in chats:
        per_number[chat["proxy_number"]] = per_number.get(chat["proxy_number"], 0) + 1
    assert sum(per_number.values()) == 9
    assert max(per_number.values()) == 3  # least loaded first: spread 3/3/3


def test_repeat_pair_gets_the_same_number_again(client, api_headers):
    first = create(client, api_headers, a=A, b=B).json
    client.post(f"/api/chats/{first['id']}/end", headers=api_headers)
    # load the pool so that "least loaded" alone would pick another number
    create(client, api_headers, a="+447700900801", b="+447700900802")
    again = create(client, api_headers, a=B, b=A).json
    assert again["proxy_number"] == first["proxy_number"]


def test_list_get_and_end(client, api_headers):
    one = create(client, api_headers, a=A, b=B).json
    two = create(client, api_headers, a=C, b=B).json
    listed = client.get("/api/chats?status=active", headers=api_headers).json["chats"]
    assert {c["id"] for c in listed} == {one["id"], two["id"]}

    detail = client.get(f"/api/chats/{one['id']}", headers=api_headers).json
    assert [m["kind"] for m in detail["messages"]] == ["intro", "intro"]
    assert {"id", "direction", "text", "status", "created_at"} <= set(detail["messages"][0])

    ended = client.post(f"/api/chats/{one['id']}/end", headers=api_headers)
    assert ended.status_code == 200
    assert ended.json["status"] == "ended"
    assert ended.json["ended_reason"] == "api"
    assert [c["id"] for c in client.get("/api/chats?status=ended", headers=api_headers).json["chats"]] == [one["id"]]
    assert [c["id"] for c in client.get("/api/chats?status=active", headers=api_headers).json["chats"]] == [two["id"]]

    again = client.post(f"/api/chats/{one['id']}/end", headers=api_headers)
    assert again.status_code == 409
    assert "already ended" in again.json["error"]


def test_ending_sends_the_end_notice_to_both(client, api_headers, gateway):
    chat = create(client, api_headers, a=A, b=B).json
    drain_once()
    gateway.sent.clear()
    client.post(f"/api/chats/{chat['id']}/end", headers=api_headers)
    drain_once()
    assert {s["to"] for s in gateway.sent} == {A, B}
    assert all(s["from"] == chat["proxy_number"] and "ended" in s["text"] for s in gateway.sent)


@pytest.mark.parametrize("path", ["/api/chats/999", "/api/chats/abc", "/api/chats/999/end"])
def test_unknown_chat_is_404(client, api_headers, path):
    resp = client.post(path, headers=api_headers) if path.endswith("end") else client.get(path, headers=api_headers)
    assert resp.status_code == 404
    assert resp.json["field"] == "id"


def test_bad_status_filter_is_400(client, api_headers):
    resp = client.get("/api/chats?status=open", headers=api_headers)
    assert resp.status_code == 400
    assert resp.json["field"] == "status"


def test_unknown_api_path_is_json_404(client, api_headers):
    resp = client.get("/api/nothing", headers=api_headers)
    assert resp.status_code in (401, 404)
    assert resp.is_json
