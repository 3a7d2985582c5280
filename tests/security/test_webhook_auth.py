"""Webhooks nobody can forge: WEBHOOK_TOKEN or a Vonage signature, and a start that refuses to run a Vonage
deployment with neither (unless WEBHOOKS_ALLOW_UNSIGNED=true says so on purpose).

The issue's repros: anyone who knew a party's number could post `msisdn=<that number>` and have the text
relayed to the other party; forged receipts (`client-ref=m<id>`, `status=failed`) marked real sends failed.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select

from tests.conftest import PROXIES, app_config
from tests.fakes.vonage import reference_signature
from webapp import create_app, outbox
from webapp.config import ConfigError
from webapp.extensions import db
from webapp.models import HeldPart, Message, Receipt
from webapp.services.chats import start_chat, validate_chat_request
from webapp.signatures import sign

from .conftest import ROOT, server_env

A, B = "+447700900111", "+447700900222"
WEBHOOK_TOKEN = "webhook-token-0123456789abcdefghij"
SECRET = "a-signature-secret-of-32-bytes!!"


def post(client, how: str, params: dict, path: str = "/webhooks/inbound-sms", token: str | None = None):
    query = {"token": token} if token is not None else {}
    if how == "get":
        return client.get(path, query_string={**params, **query})
    if how == "json":
        return client.post(path, json=params, query_string=query)
    return client.post(path, data=params, query_string=query)


def inbound_from(sender: str, text: str = "It's me, send the money to this account", mid: str = "FORGE-1") -> dict:
    return {"msisdn": sender.lstrip("+"), "to": PROXIES[0].lstrip("+"), "text": text, "messageId": mid}


def counts() -> tuple[int, int, int]:
    return (
        db.session.scalar(select(func.count()).select_from(Message).where(Message.direction == "in")),
        db.session.scalar(select(func.count()).select_from(HeldPart)),
        db.session.scalar(select(func.count()).select_from(Receipt)),
    )


@pytest.fixture
def chat(app):
    chat = start_chat(validate_chat_request(A, B))
    outbox.drain_once()  # the introductions go out
    return chat


def relays() -> list[Message]:
    return list(db.session.scalars(select(Message).where(Message.kind == "relay")))


@pytest.mark.parametrize("app_overrides", [{"WEBHOOK_TOKEN": WEBHOOK_TOKEN}])
@pytest.mark.parametrize("how", ["get", "form", "json"])
def test_with_webhook_token_a_forged_text_is_refused_and_changes_nothing(app, client, chat, how):
    for token in (None, "", "wrong-token", WEBHOOK_TOKEN[:-1], WEBHOOK_TOKEN + "x"):
        resp = post(client, how, inbound_from(A), token=token)
        assert resp.status_code == 401, (token, resp.get_json())
        assert "token" in resp.get_json()["error"]
    # a multipart "set" too: nothing is held
    part = {**inbound_from(A, "x", "FORGE-P"), "concat-ref": "9", "concat-total": "255", "concat-part": "1"}
    assert post(client, how, part).status_code == 401
    assert counts() == (0, 0, 0) and relays() == []


@pytest.mark.parametrize("app_overrides", [{"WEBHOOK_TOKEN": WEBHOOK_TOKEN}])
@pytest.mark.parametrize("how", ["get", "form", "json"])
def test_with_the_token_in_the_query_string_any_method_is_accepted(app, client, chat, how):
    resp = post(client, how, inbound_from(A, "on my way", f"REAL-{how}"), token=WEBHOOK_TOKEN)
    assert resp.status_code == 204, resp.get_json()
    [relay] = relays()
    assert relay.text == "on my way" and relay.to_number == B
    # the token is ours, not Vonage's: never stored with what came in
    stored = db.session.scalar(select(Message).where(Message.provider_id == f"REAL-{how}"))
    assert WEBHOOK_TOKEN not in str(stored.meta) and stored.text == "on my way"


@pytest.mark.parametrize("app_overrides", [{"WEBHOOK_TOKEN": WEBHOOK_TOKEN}])
def test_a_token_given_twice_or_in_the_body_does_not_count(app, client, chat):
    twice = client.post(
        "/webhooks/inbound-sms", data=inbound_from(A), query_string=[("token", WEBHOOK_TOKEN), ("token", "x")]
    )
    assert twice.status_code in (400, 401)
    in_body = client.post("/webhooks/inbound-sms", data={**inbound_from(A), "token": WEBHOOK_TOKEN})
    assert in_body.status_code == 401
    assert counts() == (0, 0, 0)


@pytest.mark.parametrize("app_overrides", [{"WEBHOOK_TOKEN": WEBHOOK_TOKEN}])
def test_forged_delivery_receipts_are_refused_and_the_token_is_not_kept_in_a_receipt(app, client, chat, gateway):
    intro = db.session.scalar(select(Message).where(Message.kind == "intro"))
    assert intro.status == "submitted"
    forged = {"messageId": "FAKE", "status": "failed", "err-code": "6", "client-ref": f"m{intro.id}",
              "msisdn": A.lstrip("+"), "to": PROXIES[0].lstrip("+")}
    for how in ("get", "form", "json"):
        assert post(client, how, forged, "/webhooks/delivery-receipt").status_code == 401
    db.session.expire_all()
    assert db.session.get(Message, intro.id).status == "submitted" and counts()[2] == 0
    real = post(client, "get", {**forged, "status": "delivered", "err-code": "0"}, "/webhooks/delivery-receipt",
                token=WEBHOOK_TOKEN)
    assert real.status_code == 204
    receipt = db.session.scalar(select(Receipt))
    assert "token" not in (receipt.payload or {})


@pytest.mark.parametrize("app_overrides", [{"WEBHOOK_TOKEN": WEBHOOK_TOKEN, "VONAGE_SIGNATURE_SECRET": SECRET}])
def test_with_both_a_valid_signature_or_the_token_passes(app, client, chat):
    params = {**inbound_from(A, "signed", "SIGNED-1"), "timestamp": str(int(time.time())), "api-key": "key"}
    signed = {**params, "sig": reference_signature(params, SECRET, app.config["VONAGE_SIGNATURE_METHOD"])}
    assert post(client, "form", signed).status_code == 204
    assert post(client, "form", inbound_from(A, "tokened", "TOKEN-1"), token=WEBHOOK_TOKEN).status_code == 204
    refused = post(client, "form", inbound_from(A, "neither", "NONE-1"))
    assert refused.status_code == 401 and "signature" in refused.get_json()["error"]
    tampered = {**signed, "text": "changed", "messageId": "SIGNED-2"}
    assert post(client, "form", tampered, token="wrong").status_code == 401
    assert [m.text for m in relays()] == ["signed", "tokened"]


def test_the_simulated_gateway_may_run_unsigned(app, client, chat):
    assert app.config["SMS_GATEWAY"] == "simulated" and not app.config["WEBHOOK_TOKEN"]
    assert post(client, "form", inbound_from(A, "hi", "UNSIGNED-1")).status_code == 204


@pytest.mark.parametrize("app_overrides", [{"WEBHOOK_TOKEN": WEBHOOK_TOKEN}])
def test_the_simulator_carries_the_token_like_the_url_configured_at_vonage(app, client, chat):
    from webapp.dashboard.simulator import deliver_to_webhook, inbound_params

    with app.test_request_context():
        status, problem = deliver_to_webhook(inbound_params(A, PROXIES[0], "from the simulator"))
    assert (status, problem) == (204, "")
    assert [m.text for m in relays()] == ["from the simulator"]


# ------------------------------------------------------------------ start refuses


VONAGE = {"SMS_GATEWAY": "vonage", "VONAGE_API_KEY": "key", "VONAGE_API_SECRET": "secret"}


@pytest.mark.sqlite_only
def test_vonage_without_signature_or_token_refuses_to_start_naming_both(tmp_path):
    with pytest.raises(ConfigError) as refused:
        create_app(app_config(tmp_path, **VONAGE))
    assert "VONAGE_SIGNATURE_SECRET" in str(refused.value) and "WEBHOOK_TOKEN" in str(refused.value)
    # credentials alone choose the vonage gateway: the same refusal
    with pytest.raises(ConfigError, match="WEBHOOK_TOKEN"):
        create_app(app_config(tmp_path, **{**VONAGE, "SMS_GATEWAY": ""}))
    allowed = ({"WEBHOOK_TOKEN": WEBHOOK_TOKEN}, {"VONAGE_SIGNATURE_SECRET": SECRET}, {"WEBHOOKS_ALLOW_UNSIGNED": True})
    for ok in allowed:
        app = create_app(app_config(tmp_path, **VONAGE, **ok))
        assert app.config["SMS_GATEWAY"] == "vonage"


def run_entry_point(tmp_path, args: list[str], **env: str) -> subprocess.CompletedProcess:
    full = server_env(tmp_path, **env)
    for name in ("VONAGE_SIGNATURE_SECRET", "WEBHOOK_TOKEN", "WEBHOOKS_ALLOW_UNSIGNED"):
        full.pop(name, None)
    full.update(env)
    return subprocess.run(args, cwd=tmp_path, env=full, capture_output=True, text=True, timeout=60)


ENTRY_POINTS = {
    "python -m webapp": [sys.executable, "-m", "webapp"],
    "gunicorn": [sys.executable, "-m", "gunicorn", "-w", "1", "--threads", "4", "--no-control-socket",
                 "-b", "127.0.0.1:0", "webapp.wsgi:app"],
    "flask": [sys.executable, "-m", "flask", "--app", "webapp", "operators", "list"],
}


@pytest.mark.sqlite_only
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_every_entry_point_refuses_an_unauthenticated_vonage_deployment(tmp_path, entry):
    proc = run_entry_point(tmp_path, ENTRY_POINTS[entry], **VONAGE, PORT="0")
    assert proc.returncode != 0
    assert "VONAGE_SIGNATURE_SECRET" in proc.stderr and "WEBHOOK_TOKEN" in proc.stderr, proc.stderr[-2000:]
    assert "WEBHOOKS_ALLOW_UNSIGNED" in proc.stderr


@pytest.mark.sqlite_only
def test_signing_the_simulator_params_still_matches_the_reference(app):
    # the simulator signs with the app's own signer; the reference implementation agrees
    params = {"msisdn": "447700900111", "to": "447700900001", "text": "a&b=c", "timestamp": "1"}
    assert sign(params, SECRET, "sha256") == reference_signature(params, SECRET, "sha256")


def test_root_is_importable_from_tests():
    assert (ROOT / "webapp").is_dir()
