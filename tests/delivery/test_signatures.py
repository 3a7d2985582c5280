"""Signed webhooks: every method Vonage offers, signed independently of the app's code, plus the window."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select
from vonage import Auth

from tests.conftest import PROXIES
from tests.fakes.vonage import reference_signature
from webapp import outbox, signatures
from webapp.extensions import db
from webapp.models import Message, Receipt

from .conftest import A, B, wire

SECRET = "a-signature-secret-of-32-bytes!!"
METHODS = ["md5hash", "md5", "sha1", "sha256", "sha512"]


def inbound_params(text: str = "Héllo wörld & co = ✓", message_id: str = "0A0000001234ABCD", **extra) -> dict:
    params = {
        "msisdn": wire(A),
        "to": wire(PROXIES[0]),
        "messageId": message_id,
        "text": text,
        "type": "unicode",
        "keyword": "HÉLLO",
        "message-timestamp": "2026-11-27 12:00:00",
        "timestamp": str(int(time.time())),
        "nonce": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "api-key": "key",
    }
    params.update(extra)
    return params


def signed(params: dict, method: str, secret: str = SECRET, upper: bool = True) -> dict:
    sig = reference_signature(params, secret, method)
    return {**params, "sig": sig.upper() if upper else sig}


def post(client, params: dict, how: str, path: str = "/webhooks/inbound-sms"):
    if how == "get":
        return client.get(path, query_string=params)
    if how == "json":
        return client.post(path, json=params)
    return client.post(path, data=params)


def stored() -> int:
    return db.session.scalar(select(func.count()).select_from(Message).where(Message.direction == "in"))


@pytest.fixture
def delivery_overrides(request):
    method = getattr(request, "param", "sha256")
    return {"VONAGE_SIGNATURE_SECRET": SECRET, "VONAGE_SIGNATURE_METHOD": method}


@pytest.mark.parametrize("delivery_overrides", METHODS, indirect=True)
@pytest.mark.parametrize("how", ["get", "form", "json"])
def test_signed_inbound_is_accepted_and_relayed(app, fake, chat, client, how):
    method = app.config["VONAGE_SIGNATURE_METHOD"]
    resp = post(client, signed(inbound_params(), method), how)
    assert resp.status_code == 204, resp.get_json()
    outbox.drain_once()
    [sent] = fake.accepted
    assert sent["text"] == "Héllo wörld & co = ✓" and sent["to"] == wire(B)


@pytest.mark.parametrize("delivery_overrides", METHODS, indirect=True)
def test_forged_tampered_unsigned_stale_are_refused(app, fake, chat, client):
    method = app.config["VONAGE_SIGNATURE_METHOD"]
    good = signed(inbound_params(), method)
    cases = {
        "tampered text": {**good, "text": "Send me your PIN"},
        "tampered sender": {**good, "msisdn": "447700900999"},
        "added field": {**good, "concat": "true"},
        "wrong secret": signed(inbound_params(), method, secret="not-the-secret"),
        "unsigned": inbound_params(),
        "empty sig": {**good, "sig": ""},
        "stale": signed(inbound_params(timestamp=str(int(time.time()) - 301)), method),
        "future": signed(inbound_params(timestamp=str(int(time.time()) + 360)), method),  # margin: cases run later
        "no timestamp": signed({k: v for k, v in inbound_params().items() if k != "timestamp"}, method),
        "bad timestamp": signed(inbound_params(timestamp="yesterday"), method),
        "non-hex sig": {**good, "sig": "é" * 64},
    }
    for name, params in cases.items():
        resp = post(client, params, "form")
        assert resp.status_code == 401, name
        assert resp.get_json()["error"].startswith("invalid signature"), name
    assert stored() == 0
    outbox.drain_once()
    assert fake.accepted == []


def test_other_method_than_configured_is_refused(app, chat, client):
    resp = post(client, signed(inbound_params(), "md5hash"), "form")  # app expects sha256
    assert resp.status_code == 401


def test_timestamp_window_is_configurable(app, chat, client):
    app.config["VONAGE_SIGNATURE_MAX_AGE"] = 3600
    params = signed(inbound_params(timestamp=str(int(time.time()) - 1800)), "sha256")
    assert post(client, params, "form").status_code == 204


@pytest.mark.parametrize("method", ["md5", "sha1", "sha256", "sha512"])
def test_app_signature_matches_the_sdk_for_hmac_methods(method):
    """The SDK's own signer (vonage Auth.sign_params) agrees with ours for the methods it covers."""
    params = inbound_params()
    sdk = Auth(api_key="key", signature_secret=SECRET, signature_method=method)
    assert signatures.sign(params, SECRET, method) == sdk.sign_params(dict(params))
    signatures.verify({**params, "sig": sdk.sign_params(dict(params))}, SECRET, method)


def test_md5hash_matches_the_documented_recipe():
    """md5hash, written out from Vonage's 'Signing Messages' page by hand: md5('&k=v...' + secret)."""
    import hashlib

    params = {"b": "x&y", "a": "1=2", "timestamp": "1700000000"}
    text = "&a=1_2&b=x_y&timestamp=1700000000"
    assert signatures.sign(params, "s3cret", "md5hash") == hashlib.md5((text + "s3cret").encode()).hexdigest()
    signatures.verify({**params, "sig": hashlib.md5((text + "s3cret").encode()).hexdigest().upper()},
                      "s3cret", "md5hash", max_age=10**10)


@pytest.mark.parametrize("delivery_overrides", ["md5hash", "sha512"], indirect=True)
def test_signed_delivery_receipts_from_vonage_are_accepted(app, fake, chat, served, client):
    fake.signature_secret, fake.signature_method = SECRET, app.config["VONAGE_SIGNATURE_METHOD"]
    fake.dlr_url = served + "/webhooks/delivery-receipt"
    assert post(client, signed(inbound_params(), fake.signature_method), "form").status_code == 204
    outbox.drain_once()
    deadline = time.monotonic() + 10
    while not fake.dlrs and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake.dlrs[0]["result"] == 204
    unsigned = {"messageId": "X1", "status": "delivered", "err-code": "0"}
    assert client.post("/webhooks/delivery-receipt", data=unsigned).status_code == 401
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Receipt)) == 1


class TestWithoutSecret:
    @pytest.fixture
    def delivery_overrides(self):
        return {"VONAGE_SIGNATURE_SECRET": ""}

    def test_unsigned_webhooks_are_accepted(self, app, chat, client):
        assert post(client, inbound_params(), "form").status_code == 204
        assert stored() == 1


def test_unknown_signature_method_is_a_configuration_error(tmp_path):
    from tests.conftest import app_config
    from webapp import create_app
    from webapp.config import ConfigError

    with pytest.raises(ConfigError, match="VONAGE_SIGNATURE_METHOD"):
        create_app(app_config(tmp_path, VONAGE_SIGNATURE_METHOD="sha3"))
