"""The outbox against the fake Vonage, through the real SDK: retries, give-ups, ambiguity, order, resend."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.conftest import PROXIES
from tests.fakes.vonage import Faults
from webapp import outbox
from webapp.extensions import db
from webapp.models import Lane, Message, utcnow
from webapp.services import Conflict
from webapp.services.chats import queue_to_party
from webapp.services.outbound import resend_message

from .conftest import A, B, drain_all, wire


def queue(chat, text: str, side: str = "b") -> Message:
    msg = queue_to_party(chat, side, "relay", text)
    db.session.commit()
    return msg


def reload(msg: Message) -> Message:
    db.session.expire_all()
    return db.session.get(Message, msg.id)


def test_relay_is_sent_with_client_ref_and_parts(app, fake, chat, post_inbound):
    assert post_inbound("Hello driver").status_code == 204
    assert outbox.drain_once() == 1
    [sent] = fake.accepted
    relay = db.session.scalar(select(Message).where(Message.kind == "relay"))
    assert (sent["to"], sent["from"], sent["text"]) == (wire(B), wire(PROXIES[0]), "Hello driver")
    assert sent["client-ref"] == f"m{relay.id}"
    assert relay.status == "submitted"
    assert [p.vonage_id for p in relay.parts] == sent["message-ids"]


@pytest.mark.parametrize("fault", ["throttle", "http500", "http429"])
def test_retryable_faults_are_retried_until_sent(app, fake, chat, fault):
    fake.faults = Faults(**{fault: 1.0})
    msg = queue(chat, "retry me")
    outbox.drain_once()
    msg = reload(msg)
    # tried at once, then twice more after a few tens of milliseconds; then back to the queue with backoff
    assert msg.status == "queued" and msg.attempts == 1 + outbox.sender.QUICK_RETRIES and msg.error
    assert len(fake.requests) == 1 + outbox.sender.QUICK_RETRIES
    assert fake.accepted == []
    fake.faults = Faults()
    drain_all()
    assert reload(msg).status == "submitted"
    assert len(fake.accepted) == 1


def test_connection_refused_is_retried(app, fake, chat):
    fake.stop()
    msg = queue(chat, "nobody home")
    outbox.drain_once()
    msg = reload(msg)
    assert msg.status == "queued"
    assert msg.error.startswith("connection failed")


@pytest.mark.parametrize(
    ("suffix", "reason"),
    [("0004", "status 4"), ("0009", "status 9"), ("0015", "status 15")],
)
def test_permanent_errors_fail_at_once_with_reason(app, fake, suffix, reason):
    from webapp.services.chats import start_chat, validate_chat_request

    chat = start_chat(validate_chat_request(A, "+44770091" + suffix))
    drain_all()
    [intro] = [m for m in db.session.scalars(select(Message)) if m.to_number.endswith(suffix)]
    assert intro.status == "failed"
    assert intro.attempts == 1
    assert reason in intro.error
    assert chat.id


def test_bad_credentials_fail_without_retry(app, fake, chat):
    fake.api_secret = "rotated"
    msg = queue(chat, "hello")
    drain_all()
    msg = reload(msg)
    assert msg.status == "failed" and "status 4" in msg.error and msg.attempts == 1


def test_gives_up_after_max_attempts(app, fake, chat):
    app.config["OUTBOX_MAX_ATTEMPTS"] = 3
    fake.faults = Faults(http500=1.0)
    msg = queue(chat, "never")
    drain_all()
    msg = reload(msg)
    assert msg.status == "failed" and msg.attempts == 3
    assert "gave up after 3 attempts" in msg.error


def test_backoff_grows_with_jitter():
    waits = [outbox.backoff(n, base=1.0, cap=300.0) for n in range(1, 12) for _ in range(20)]
    assert all(0.5 <= w <= 300.5 for w in waits)
    assert max(outbox.backoff(10, 1.0, 300.0) for _ in range(50)) > 10
    assert len({round(outbox.backoff(3), 6) for _ in range(20)}) > 1  # jitter


def test_partial_failure_is_not_resent(app, fake):
    from webapp.services.chats import start_chat, validate_chat_request

    start_chat(validate_chat_request(A, "+447700900888"))
    drain_all()
    intro = db.session.scalar(select(Message).where(Message.to_number == "+447700900888"))
    assert intro.status == "failed" and "1 of 2 parts accepted" in intro.error
    assert len(fake.accepted_for("447700900888")) == 1


def test_sdk_sends_one_post_on_a_dropped_connection(app, fake, chat):
    """The SDK re-POSTs up to pool_maxsize times on RemoteDisconnected: we must see exactly one request."""
    fake.faults = Faults(drop_after_accept=1.0)
    msg = queue(chat, "once only")
    outbox.drain_once()
    assert len(fake.requests) == 1
    assert len(fake.accepted) == 1
    msg = reload(msg)
    assert msg.status == "unconfirmed"
    assert msg.next_attempt_at is not None


class TestAmbiguousSends:
    """A send whose answer was lost: a receipt with its client-ref settles it, else it is resent later."""

    @pytest.fixture
    def delivery_overrides(self):
        return {"OUTBOX_RECONCILE_SECONDS": 30}

    def test_receipt_with_client_ref_confirms_and_prevents_a_resend(self, app, fake, chat, served):
        fake.dlr_url = served + "/webhooks/delivery-receipt"
        fake.dlr_delay = 0.3  # the receipt arrives after the worker gave up waiting for the answer
        fake.faults = Faults(drop_after_accept=1.0)
        msg = queue(chat, "did it go?")
        outbox.drain_once()
        assert reload(msg).status == "unconfirmed"
        fake.faults = Faults()
        deadline = utcnow() + timedelta(seconds=10)
        while reload(msg).status == "unconfirmed" and utcnow() < deadline:
            db.session.rollback()
        msg = reload(msg)
        assert msg.status == "delivered"
        assert [p.vonage_id for p in msg.parts] == fake.accepted[0]["message-ids"]
        # the window closes: nothing is resent
        msg.next_attempt_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
        drain_all()
        assert len(fake.accepted) == 1

    def test_no_receipt_within_window_resends_once(self, app, fake, chat):
        fake.faults = Faults(drop=1.0)  # connection closed before Vonage took it
        msg = queue(chat, "lost in transit")
        outbox.drain_once()
        assert reload(msg).status == "unconfirmed"
        fake.faults = Faults()
        assert outbox.drain_once() == 0  # still inside the window: nothing resent
        msg = reload(msg)
        msg.next_attempt_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
        drain_all()
        assert reload(msg).status == "submitted"
        assert len(fake.accepted) == 1

    def test_receipt_arriving_while_requeued_cancels_the_resend(self, app, fake, chat, client):
        fake.faults = Faults(drop_after_accept=1.0)
        msg = queue(chat, "late receipt")
        outbox.drain_once()
        fake.faults = Faults()
        [accepted] = fake.accepted
        resp = client.post("/webhooks/delivery-receipt", data={
            "messageId": accepted["message-ids"][0], "status": "accepted", "client-ref": f"m{msg.id}",
            "msisdn": accepted["to"], "to": accepted["from"], "err-code": "0"})
        assert resp.status_code == 204
        msg = reload(msg)
        assert msg.status == "submitted" and msg.next_attempt_at is None
        drain_all()
        assert len(fake.accepted) == 1

    def test_interrupted_send_is_reconciled_not_blindly_resent(self, app, fake, chat, client):
        """A worker killed between claim and settle leaves `sending`: after the lease it is unconfirmed."""
        msg = queue(chat, "killed mid-send")
        [batch] = outbox.claim(10)
        assert [job.message_id for job in batch.jobs] == [msg.id]
        # the process "died" here after Vonage accepted it; Vonage's receipt names our client-ref
        outbox.gateway().send(to=B, sender=PROXIES[0], text="killed mid-send", client_ref=f"m{msg.id}")
        [accepted] = fake.accepted
        resp = client.post("/webhooks/delivery-receipt", data={
            "messageId": accepted["message-ids"][0], "status": "delivered", "client-ref": f"m{msg.id}"})
        assert resp.status_code == 204
        assert reload(msg).status == "sending"  # a send in flight is left to its worker
        assert outbox.recover_interrupted() == 0  # its lease still runs
        lane = db.session.scalar(select(Lane).where(Lane.recipient == B))
        lane.leased_until = utcnow() - timedelta(seconds=1)  # the lease ran out: the worker is gone
        db.session.commit()
        assert outbox.recover_interrupted() == 1
        m = reload(msg)
        assert m.status == "unconfirmed"
        m.next_attempt_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
        drain_all()
        assert reload(msg).status == "delivered"
        assert len(fake.accepted) == 1


class TestAtMostOnce:
    @pytest.fixture
    def delivery_overrides(self):
        return {"OUTBOX_RECONCILE_SECONDS": 0}

    def test_unconfirmed_waits_for_the_operator_and_does_not_block(self, app, fake, chat):
        fake.faults = Faults(drop=1.0)
        first = queue(chat, "first")
        outbox.drain_once()
        fake.faults = Faults()
        second = queue(chat, "second")
        drain_all()
        assert reload(first).status == "unconfirmed" and reload(first).next_attempt_at is None
        assert reload(second).status == "submitted"
        assert [a["text"] for a in fake.accepted] == ["second"]
        copy = resend_message(first.id)
        drain_all()
        assert reload(copy).status == "submitted"
        assert [a["text"] for a in fake.accepted] == ["second", "first"]


def test_order_per_recipient_survives_retries(app, fake, chat):
    fake.faults = Faults(throttle=0.3, http500=0.1)
    texts = [f"ordered {i}" for i in range(20)]
    for text in texts:
        queue(chat, text)
    drain_all()
    assert [a["text"] for a in fake.accepted_for(wire(B))] == texts


def test_order_per_recipient_with_parallel_senders(app, fake, chat):
    app.config["OUTBOX_CONCURRENCY"] = 8
    fake.faults = Faults(throttle=0.3, http429=0.1)
    for i in range(20):
        queue(chat, f"to B {i}", side="b")
        queue(chat, f"to A {i}", side="a")
    drain_all()
    assert [a["text"] for a in fake.accepted_for(wire(B))] == [f"to B {i}" for i in range(20)]
    assert [a["text"] for a in fake.accepted_for(wire(A))] == [f"to A {i}" for i in range(20)]


def test_resend_failed_message(app, fake, chat):
    fake.api_secret = "wrong"
    msg = queue(chat, "resend me")
    drain_all()
    assert reload(msg).status == "failed"
    fake.api_secret = "secret"
    copy = resend_message(msg.id, requested_by="alice")
    assert copy.id != msg.id and copy.status == "queued"
    drain_all()
    assert reload(copy).status == "submitted"
    assert reload(msg).meta["resent_as"] == copy.id
    assert [a["text"] for a in fake.accepted] == ["resend me"]
    with pytest.raises(Conflict):
        resend_message(msg.id)  # once only
    with pytest.raises(Conflict):
        resend_message(copy.id)  # submitted: nothing to resend


def test_resend_refused_to_someone_who_opted_out(app, fake, chat, post_inbound):
    fake.api_secret = "wrong"
    msg = queue(chat, "you there?", side="a")
    drain_all()
    assert reload(msg).status == "failed"
    assert post_inbound("STOP", sender=A).status_code == 204
    with pytest.raises(Conflict, match="opted out"):
        resend_message(msg.id)
