"""Property: whatever arrives at a webhook, the answer is 204 or a clear 4xx JSON error, never a 5xx."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import PROXIES

from .conftest import A, wire

KEYS = ["msisdn", "to", "text", "messageId", "type", "keyword", "concat", "concat-ref", "concat-total",
        "concat-part", "status", "err-code", "client-ref", "timestamp", "sig", "message-timestamp"]
PATHS = ["/webhooks/inbound-sms", "/webhooks/inbound", "/webhooks/delivery-receipt"]
ALLOWED = {204, 400, 401, 404, 405, 409, 413, 415, 422}

plausible = st.sampled_from([wire(A), wire(PROXIES[0]), "447700900999", "", "+", "0", "STOP", "true", "1",
                             "3", "delivered", "m1", "m999999999999999999999"])
values = st.one_of(plausible, st.text(max_size=40), st.text(min_size=300, max_size=12_000).filter(bool))
params = st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=12)), values, max_size=10)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
json_bodies = st.one_of(st.dictionaries(st.sampled_from(KEYS), st.one_of(values, json_values), max_size=10),
                        json_values)

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def check(resp) -> None:
    assert resp.status_code in ALLOWED, (resp.status_code, resp.get_data()[:300])
    if resp.status_code != 204:
        body = resp.get_json(silent=True)
        assert isinstance(body, dict) and "error" in body
        assert "Traceback" not in resp.get_data(as_text=True)


@FUZZ
@given(path=st.sampled_from(PATHS), data=params, how=st.sampled_from(["get", "form"]))
def test_random_query_and_form_payloads(app, chat, client, path, data, how):
    if how == "get":
        check(client.get(path, query_string=data))
    else:
        check(client.post(path, data=data))


@FUZZ
@given(path=st.sampled_from(PATHS), body=json_bodies)
def test_random_json_payloads(app, chat, client, path, body):
    check(client.post(path, data=json.dumps(body), content_type="application/json"))


@FUZZ
@given(path=st.sampled_from(PATHS), raw=st.binary(max_size=400),
       ctype=st.sampled_from(["application/x-www-form-urlencoded", "application/json", "text/plain",
                              "multipart/form-data; boundary=x", ""]))
def test_random_bytes(app, chat, client, path, raw, ctype):
    check(client.post(path, data=raw, content_type=ctype))
