"""The Vonage gateway: the real SDK sending over HTTPS to a local fake of /sms/json."""

import pytest

from tests.conftest import app_config
from tests.fakes.vonage import FakeVonage, Faults
from webapp import create_app, prepare_database
from webapp.config import ConfigError
from webapp.gateway.vonage import VonageGateway
from webapp.outbox import drain_once

A, B = "+447700900111", "+447700900222"


@pytest.fixture
def fake(tmp_path, monkeypatch):
    with FakeVonage(tmp_path / "certs") as f:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(f.ca_path))
        yield f


@pytest.fixture
def vonage_gateway(fake):
    return VonageGateway(api_key="key", api_secret="secret", rest_host=fake.host, api_host=fake.host, timeout=5)


@pytest.fixture
def vonage_app(tmp_path, fake):
    app = create_app(
        app_config(
            tmp_path,
            SMS_GATEWAY="vonage",
            WEBHOOKS_ALLOW_UNSIGNED=True,
            VONAGE_API_KEY="key",
            VONAGE_API_SECRET="secret",
            VONAGE_REST_HOST=fake.host,
            VONAGE_API_HOST=fake.host,
        )
    )
    prepare_database(app)
    with app.app_context():
        yield app


def test_relays_go_through_the_sdk_from_the_proxy_to_the_other_party(vonage_app, fake, api_headers):
    client = vonage_app.test_client()
    chat = client.post("/api/chats", json={"a": A, "b": B, "b_label": "Driver"}, headers=api_headers).json
    proxy = chat["proxy_number"].lstrip("+")
    drain_once()
    intros = {r["to"]: r for r in fake.accepted}
    assert set(intros) == {A[1:], B[1:]}
    assert {r["from"] for r in fake.accepted} == {proxy}
    fake.clear()

    for i, text in enumerate(["On my way", "Ça marche 👍 — à tout de suite", "x" * 400]):
        sender, other = (A, B) if i % 2 == 0 else (B, A)
        resp = client.post(
            "/webhooks/inbound-sms",
            data={"msisdn": sender[1:], "to": proxy, "text": text, "messageId": f"in-{i}"},
        )
        assert resp.status_code == 204
        drain_once()
        [sent] = fake.accepted
        assert sent["from"] == proxy  # always the proxy number, never a real one
        assert sent["to"] == other[1:]
        assert sent["text"] == text  # intact, unicode included
        assert sent["type"] == ("unicode" if i == 1 else "text")
        assert sender[1:] not in sent["text"]
        fake.clear()

    detail = client.get(f"/api/chats/{chat['id']}", headers=api_headers).json
    relays = [m for m in detail["messages"] if m["kind"] == "relay"]
    assert [m["status"] for m in relays] == ["submitted"] * 3


def test_the_gateway_keeps_every_part_id(vonage_app, fake, api_headers):
    from webapp.extensions import db
    from webapp.models import Message

    client = vonage_app.test_client()
    chat = client.post("/api/chats", json={"a": A, "b": B}, headers=api_headers).json
    client.post(
        "/webhooks/inbound-sms",
        json={"msisdn": A[1:], "to": chat["proxy_number"][1:], "text": "y" * 320, "messageId": "long-1"},
    )
    drain_once()
    relay = db.session.query(Message).filter_by(kind="relay").one()
    [sent] = fake.accepted_for(B[1:])[-1:]
    assert len(sent["message-ids"]) == 3
    assert sorted(p.vonage_id for p in relay.parts) == sorted(sent["message-ids"])


@pytest.mark.parametrize(
    ("suffix", "retryable", "status"),
    [
        ("0001", True, "1"),  # throttled
        ("0002", False, "2"),
        ("0004", False, "4"),  # bad credentials
        ("0009", False, "9"),
        ("0015", False, "15"),
    ],
)
def test_status_codes_map_to_retryable_or_not(vonage_gateway, suffix, retryable, status):
    result = vonage_gateway.send(to=f"+44770090{suffix}", sender="+447700900001", text="hi", client_ref="r")
    assert not result.ok
    assert result.retryable is retryable
    assert result.status == status
    assert result.error


@pytest.mark.parametrize(("suffix", "code"), [("0429", 429), ("0500", 500), ("0503", 503)])
def test_http_429_and_5xx_are_retryable(vonage_gateway, suffix, code):
    result = vonage_gateway.send(to=f"+44770090{suffix}", sender="+447700900001", text="hi", client_ref="r")
    assert (result.ok, result.retryable, result.http_status) == (False, True, code)


def test_partial_failure_is_not_retried(vonage_gateway):
    result = vonage_gateway.send(to="+447700900888", sender="+447700900001", text="hi", client_ref="r")
    assert not result.ok and not result.retryable
    assert len(result.message_ids) == 1


def test_non_json_answer_is_ambiguous_not_a_crash(vonage_gateway):
    result = vonage_gateway.send(to="+447700900777", sender="+447700900001", text="hi", client_ref="r")
    assert not result.ok and result.ambiguous and not result.retryable


def test_connection_refused_is_retryable(tmp_path):
    gw = VonageGateway(api_key="k", api_secret="s", rest_host="127.0.0.1:9", api_host="127.0.0.1:9", timeout=2)
    result = gw.send(to=A, sender=B, text="hi", client_ref="r")
    assert (result.ok, result.retryable, result.ambiguous) == (False, True, False)


def test_a_dropped_connection_after_sending_is_ambiguous_and_posted_once(vonage_gateway, fake):
    fake.faults = Faults(drop_after_accept=1.0)
    result = vonage_gateway.send(to=A, sender=B, text="hi", client_ref="r-drop")
    assert not result.ok and result.ambiguous and not result.retryable
    # the SDK's own re-POST on RemoteDisconnected must not fire (pool_maxsize=1)
    assert [r["params"]["client-ref"] for r in fake.requests] == ["r-drop"]


def test_vonage_gateway_without_credentials_refuses_to_start(tmp_path):
    with pytest.raises(ConfigError, match="VONAGE_API_KEY"):
        create_app(app_config(tmp_path, SMS_GATEWAY="vonage", VONAGE_API_KEY="", VONAGE_API_SECRET=""))


def test_gateway_defaults_to_vonage_when_credentials_are_set(tmp_path):
    app = create_app(
        app_config(
            tmp_path, SMS_GATEWAY="", VONAGE_API_KEY="k", VONAGE_API_SECRET="s", VONAGE_REST_HOST="127.0.0.1:9",
            VONAGE_SIGNATURE_SECRET="sig-secret",
        )
    )
    assert app.config["SMS_GATEWAY"] == "vonage"
    assert create_app(app_config(tmp_path, SMS_GATEWAY="")).config["SMS_GATEWAY"] == "simulated"
