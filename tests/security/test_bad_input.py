"""Bad input gets a 4xx JSON error, never a 5xx, and nothing half-stored (SQLite and PostgreSQL).

Repros from the issue: a text with a NUL character got 503 forever on PostgreSQL and was never stored; JSON
nested a few thousand deep gave 503/500; /api/chats/99999999999999999999999 gave 500.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from tests.conftest import PROXIES
from tests.test_auth import PASSWORD, fresh_g_per_request, sign_in
from webapp.extensions import db
from webapp.hardening import MAX_JSON_DEPTH, json_depth
from webapp.models import Chat, HeldPart, Message, Receipt
from webapp.services.operators import create_operator

A, B = "+447700900111", "+447700900222"
HUGE = "99999999999999999999999"


def nothing_stored() -> bool:
    return all(
        db.session.scalar(select(func.count()).select_from(model)) == 0 for model in (Message, HeldPart, Receipt)
    )


def inbound(**overrides: str) -> dict:
    return {"msisdn": A.lstrip("+"), "to": PROXIES[0].lstrip("+"), "text": "hi", "messageId": "M-1", **overrides}


def nested(depth: int) -> object:
    value: object = "bottom"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("how", ["get", "form", "json"])
@pytest.mark.parametrize(
    "params",
    [
        inbound(text="before\x00after"),
        inbound(msisdn="44770090\x000111"),
        inbound(messageId="M\x001"),
        {**inbound(), "bad\x00key": "x"},
        {**inbound(), "concat-ref": "7\x00", "concat-total": "2", "concat-part": "1"},
    ],
    ids=["text", "msisdn", "messageId", "key", "concat-ref"],
)
def test_a_nul_character_in_any_webhook_field_is_a_400_and_nothing_is_stored(client, how, params):
    for path in ("/webhooks/inbound-sms", "/webhooks/delivery-receipt"):
        if how == "get":
            resp = client.get(path, query_string=params)
        elif how == "json":
            resp = client.post(path, json=params)
        else:
            resp = client.post(path, data=params)
        assert resp.status_code == 400, resp.get_data(as_text=True)
        assert "NUL" in resp.get_json()["error"]
    assert nothing_stored()


def test_the_same_text_without_the_nul_is_stored(client):
    assert client.post("/webhooks/inbound-sms", data=inbound(text="beforeafter")).status_code == 204
    assert not nothing_stored()


def test_json_depth_is_measured_without_recursion():
    assert json_depth('{"a": [1, {"b": "[[[[not counted]]]]"}]}') == 3
    assert json_depth("[" * 100_000 + "]" * 100_000) == 100_000


def with_nesting(fields: dict, depth: int) -> str:
    """A JSON object with `fields` and one more, `x`, so that the whole is `depth` levels deep (written as
    text: Python's own encoder would recurse)."""
    return json.dumps(fields)[:-1] + ', "x": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5000, 100_000])
def test_deeply_nested_json_is_a_400_for_webhooks_and_the_api(client, api_headers, depth):
    json_type = {"content_type": "application/json"}
    resp = client.post("/webhooks/inbound-sms", data=with_nesting(inbound(), depth), **json_type)
    assert resp.status_code == 400 and "nested deeper" in resp.get_json()["error"]
    resp = client.post("/api/chats", data=with_nesting({"a": A, "b": B}, depth), headers=api_headers, **json_type)
    assert resp.status_code == 400 and "nested deeper" in resp.get_json()["error"]
    assert nothing_stored() and db.session.scalar(select(func.count()).select_from(Chat)) == 0


def test_json_at_the_depth_limit_is_accepted(client, api_headers):
    body = {**inbound(), "extra": nested(MAX_JSON_DEPTH - 1)}
    assert client.post("/webhooks/inbound-sms", json=body).status_code == 204
    resp = client.post("/api/chats", json={"a": A, "b": B, "x": nested(MAX_JSON_DEPTH - 1)}, headers=api_headers)
    assert resp.status_code == 201


@pytest.mark.parametrize("raw", [HUGE, "9223372036854775808", "-1", "1_0", "٣", "0x10", "9223372036854775807"])
def test_chat_ids_out_of_range_or_not_numbers_are_404_json(client, api_headers, raw):
    for method, path in (("get", f"/api/chats/{raw}"), ("post", f"/api/chats/{raw}/end")):
        resp = getattr(client, method)(path, headers=api_headers)
        assert resp.status_code == 404, (path, resp.get_data(as_text=True))
        assert resp.get_json()["field"] == "id"


def test_api_offsets_out_of_range_and_nul_in_fields_are_400(client, api_headers):
    resp = client.get(f"/api/chats?offset={HUGE}", headers=api_headers)
    assert resp.status_code == 400 and resp.get_json()["field"] == "offset"
    resp = client.post("/api/chats", json={"a": A, "b": B, "a_label": "Dri\x00ver"}, headers=api_headers)
    assert resp.status_code == 400 and "NUL" in resp.get_json()["error"]
    resp = client.post("/chat", data={"userANumber": A, "userBNumber": B, "reference": "r\x00"}, headers=api_headers)
    assert resp.status_code == 400 and "NUL" in resp.get_json()["error"]
    assert db.session.scalar(select(func.count()).select_from(Chat)) == 0


def test_a_receipt_for_an_out_of_range_client_ref_is_kept_not_a_5xx(client):
    resp = client.post(
        "/webhooks/delivery-receipt",
        data={"messageId": "X1", "status": "failed", "err-code": "6", "client-ref": "m" + HUGE},
    )
    assert resp.status_code == 204


def test_dashboard_ids_and_numbers_out_of_range_are_never_5xx(app, operator_client):
    client = operator_client
    assert client.get(f"/chats/{HUGE}").status_code == 404
    assert client.get(f"/chats/{HUGE}/transcript").status_code == 404
    for url in (f"/?q={HUGE}", f"/?page={HUGE}", f"/unrouted?page={HUGE}", f"/fragments/chats?page={HUGE}"):
        resp = client.get(url)
        assert resp.status_code < 500, (url, resp.status_code)


@pytest.fixture
def operator_client(app):
    fresh_g_per_request(app)
    create_operator("dispatcher", PASSWORD)
    client = app.test_client()
    sign_in(client)
    return client
