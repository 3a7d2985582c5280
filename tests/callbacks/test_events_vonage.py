"""message.failed from the outbox itself: the real SDK over HTTPS to the fake Vonage refuses or keeps failing."""

from __future__ import annotations

import pytest

from tests.fakes.vonage import FakeVonage

from .conftest import A, events_in_db


@pytest.fixture
def fake(tmp_path, monkeypatch):
    with FakeVonage(tmp_path / "certs") as f:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(f.ca_path))
        yield f


@pytest.fixture
def events_overrides(fake):
    return {"SMS_GATEWAY": "vonage", "WEBHOOKS_ALLOW_UNSIGNED": True, "VONAGE_API_KEY": "key",
            "VONAGE_API_SECRET": "secret",
            "VONAGE_REST_HOST": fake.host, "VONAGE_TIMEOUT": 5, "VONAGE_MAX_SENDS_PER_SECOND": 1000.0,
            "OUTBOX_RETRY_BASE_SECONDS": 0.05, "OUTBOX_RETRY_CAP_SECONDS": 0.1, "OUTBOX_MAX_ATTEMPTS": 2,
            "OUTBOX_CONCURRENCY": 1}


@pytest.mark.parametrize(("b", "reason"), [
    ("+447700910002", "Missing to param"),  # Vonage refuses: failed at once
    ("+447700910500", "gave up after 2 attempts"),  # HTTP 500 every time: retried, then given up
])
def test_a_send_the_outbox_gives_up_on_is_a_message_failed_event(app, receiver, pair, deliver, b, reason):
    chat = pair(A, b, b_label="Driver")
    deliver()
    failed = [e["data"] for e in receiver.accepted() if e["type"] == "message.failed"]
    assert len(failed) == 1, receiver.accepted_types()
    data = failed[0]
    assert (data["chat_id"], data["to"], data["side"], data["kind"]) == (chat["id"], b, "b", "intro")
    assert data["status"] == "failed" and reason in data["reason"] and data["label"] == "Driver"
    assert {e.status for e in events_in_db()} == {"delivered"}
