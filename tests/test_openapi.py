"""GET /api/openapi.json: a valid OpenAPI 3.1 document of every API route, and real answers conform to it.

Validation uses openapi-core (which checks the document against the 3.1 meta-schema and each request and
response against it, JSON Schema 2020-12), never a hand-written checker. Event callbacks that reached a real
receiver are validated against the document's `webhooks` the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIWebhookRequest
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_spec_validator import validate
from werkzeug.test import EnvironBuilder

from tests.conftest import app_config
from tests.fakes.receiver import Receiver
from webapp import callbacks, create_app, outbox
from webapp.openapi import PATHS, described_rules

A, B, C = "+447700900111", "+447700900222", "+447700900333"
SECRET = "openapi-test-secret"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(secret=SECRET) as rx:
        yield rx


@pytest.fixture
def app_overrides(receiver) -> dict[str, Any]:
    return {"EVENTS_URL": receiver.url, "EVENTS_SECRET": SECRET}


@pytest.fixture
def document(client) -> dict:
    resp = client.get("/api/openapi.json")  # public: no token
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    return resp.json


@pytest.fixture
def spec(document) -> OpenAPI:
    return OpenAPI.from_dict(document)  # refuses a document that is not valid OpenAPI 3.1


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_every_api_route_is_described_and_nothing_else(app, document):
    served = described_rules(app)
    assert served, "no API routes?"
    for rule, methods in served.items():
        assert rule in PATHS, f"{rule} is served but not described in webapp/openapi.py"
        path = PATHS[rule][0]
        assert set(document["paths"][path]) == methods, rule
    assert len(document["paths"]) == len(served)
    for path, item in document["paths"].items():
        for method, op in item.items():
            assert op["responses"], (path, method)
            if method == "post":  # every POST: safe to retry with a key, and its errors described
                assert {"400", "401", "422"} <= set(op["responses"]), path
                assert {"$ref": "#/components/parameters/IdempotencyKey"} in op["parameters"], path


def check(spec: OpenAPI, resp, request=None) -> None:
    """Validate one real exchange (the request as sent, and the response) against the document."""
    spec.validate_response(WerkzeugOpenAPIRequest(request or resp.request), WerkzeugOpenAPIResponse(resp))


def test_real_answers_match_the_document(app, client, api_headers, spec):
    json_headers = {**api_headers}
    exchanges = []

    def call(method: str, path: str, *, expect: int, **kwargs):
        path, _, query = path.partition("?")
        args = {"path": path, "method": method.upper(), "query_string": query, **kwargs}
        resp = client.open(EnvironBuilder(**args))
        assert resp.status_code == expect, (path, resp.get_data(as_text=True))
        exchanges.append((EnvironBuilder(**args).get_request(), resp))  # the same request, unread
        return resp

    chat = call("post", "/api/chats", expect=201, headers={**json_headers, "Idempotency-Key": "k1"},
                json={"a": A, "b": B, "a_label": "Customer", "reference": "R-9"}).json
    call("post", "/api/chats", expect=201, headers={**json_headers, "Idempotency-Key": "k1"},
         json={"a": A, "b": B, "a_label": "Customer", "reference": "R-9"})  # replayed
    call("post", "/api/chats", expect=422, headers={**json_headers, "Idempotency-Key": "k1"}, json={"a": A, "b": C})
    call("post", "/api/chats", expect=400, headers=json_headers, json={"a": "nope", "b": B})
    call("post", "/api/chats", expect=400, headers={**json_headers, "Idempotency-Key": "x" * 300},
         json={"a": A, "b": C})
    call("post", "/api/chats", expect=201, headers=json_headers, data={"a": C, "b": B})  # a form body
    for other in ("+447700900501", "+447700900502"):
        call("post", "/api/chats", expect=201, headers=json_headers, json={"a": A, "b": other})
    call("post", "/api/chats", expect=409, headers=json_headers, json={"a": A, "b": "+447700900503"})
    call("post", "/api/chats", expect=401, json={"a": A, "b": B})
    call("post", "/chat", expect=201, headers=json_headers, data={"userANumber": "+447700900601",
                                                                  "userBNumber": "+447700900602"})
    outbox.drain_once()
    client.post("/webhooks/inbound-sms", data={"msisdn": A[1:], "to": chat["proxy_number"][1:], "text": "hi",
                                                "messageId": "OA-1"})
    call("get", f"/api/chats/{chat['id']}", expect=200, headers=api_headers)
    call("get", "/api/chats/999999", expect=404, headers=api_headers)
    call("get", "/api/chats?reference=R-9", expect=200, headers=api_headers)
    call("get", "/api/chats?status=active&limit=2&offset=1", expect=200, headers=api_headers)
    call("get", "/api/chats?limit=0", expect=400, headers=api_headers)
    call("get", "/api/chats?status=open", expect=400, headers=api_headers)
    call("get", "/api/chats", expect=401)
    call("post", f"/api/chats/{chat['id']}/end", expect=200, headers=api_headers)
    call("post", f"/api/chats/{chat['id']}/end", expect=409, headers=api_headers)
    call("post", "/api/chats/424242/end", expect=404, headers=api_headers)
    call("get", "/api/openapi.json", expect=200)
    for request, resp in exchanges:
        check(spec, resp, request)
    assert {r.status_code for _, r in exchanges} >= {200, 201, 400, 401, 404, 409, 422}


def test_the_disabled_api_answer_matches_the_document(tmp_path, spec):
    app = create_app(app_config(tmp_path, API_TOKEN=""))
    resp = app.test_client().get("/api/chats", headers={"Authorization": "Bearer x"})
    assert resp.status_code == 503
    check(spec, resp)


def test_real_event_callbacks_match_the_webhook_description(app, client, api_headers, receiver, spec):
    chat = client.post("/api/chats", json={"a": A, "b": B, "reference": "R-1"}, headers=api_headers).json
    outbox.drain_once()
    app.extensions["sms_gateway"].flush_receipts(app)
    client.post("/webhooks/inbound-sms", data={"msisdn": A[1:], "to": chat["proxy_number"][1:], "text": "hi",
                                                "messageId": "OA-2"})
    client.post("/webhooks/inbound-sms", data={"msisdn": B[1:], "to": chat["proxy_number"][1:], "text": "STOP",
                                                "messageId": "OA-3"})
    client.post("/api/chats", json={"a": C, "b": B}, headers=api_headers)
    while callbacks.drain_once():
        pass
    kinds = {h.event["type"] for h in receiver.hits}
    assert kinds >= {"chat.created", "message.delivered", "message.received", "participant.opted_out", "chat.ended"}
    for hit in receiver.hits:
        request = requests.Request("POST", receiver.url, data=hit.body, headers=hit.headers)
        spec.validate_webhook_request(RequestsOpenAPIWebhookRequest(request, "event"))
