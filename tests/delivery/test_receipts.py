"""Delivery receipts: GET / POST form / POST JSON, per-part state, unknown ids stored, live events."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from webapp import live, outbox
from webapp.extensions import db
from webapp.models import Message, Receipt
from webapp.outbox.delivery import message_status_from_parts
from webapp.services.chats import queue_to_party

from .conftest import drain_all


@pytest.fixture
def events(monkeypatch) -> list[tuple[str, dict]]:
    seen: list[tuple[str, dict]] = []
    monkeypatch.setattr(live, "_emit", lambda event, payload: seen.append((event, payload)))
    return seen


def sent_message(chat, fake, text: str = "hello") -> tuple[Message, list[str]]:
    msg = queue_to_party(chat, "b", "relay", text)
    db.session.commit()
    drain_all()
    return db.session.get(Message, msg.id), fake.accepted[-1]["message-ids"]


def dlr(client, how: str, **params):
    if how == "get":
        return client.get("/webhooks/delivery-receipt", query_string=params)
    if how == "json":
        return client.post("/webhooks/delivery-receipt", json=params)
    return client.post("/webhooks/delivery-receipt", data=params)


def state(msg: Message) -> str:
    db.session.expire_all()
    return db.session.get(Message, msg.id).status


@pytest.mark.parametrize("how", ["get", "form", "json"])
@pytest.mark.parametrize("status", ["delivered", "failed", "expired", "rejected"])
def test_receipt_sets_the_message_state(app, fake, chat, client, events, how, status):
    msg, [vid] = sent_message(chat, fake)
    code = "0" if status == "delivered" else "4"
    resp = dlr(client, how, messageId=vid, status=status, **{"err-code": code})
    assert resp.status_code == 204
    assert state(msg) == status
    assert ("message_status", {"chat_id": chat.id, "id": msg.id, "status": status}) in events
    if status != "delivered":
        assert "err-code 4" in db.session.get(Message, msg.id).error


def test_multipart_message_is_delivered_when_all_parts_are(app, fake, chat, client):
    msg, ids = sent_message(chat, fake, "x" * 400)
    assert len(ids) == 3 and state(msg) == "submitted"
    for vid in ids[:2]:
        assert dlr(client, "form", messageId=vid, status="delivered").status_code == 204
        assert state(msg) == "submitted"
    dlr(client, "form", messageId=ids[2], status="delivered")
    assert state(msg) == "delivered"


def test_one_failed_part_fails_the_message(app, fake, chat, client):
    msg, ids = sent_message(chat, fake, "y" * 200)
    dlr(client, "form", messageId=ids[0], status="delivered")
    dlr(client, "form", messageId=ids[1], status="failed", **{"err-code": "3"})
    assert state(msg) == "failed"


def test_late_non_final_receipt_does_not_undo_delivered(app, fake, chat, client):
    msg, [vid] = sent_message(chat, fake)
    dlr(client, "form", messageId=vid, status="delivered")
    dlr(client, "form", messageId=vid, status="accepted")
    assert state(msg) == "delivered"


def test_receipt_for_unknown_id_is_stored_not_an_error(app, client):
    resp = dlr(client, "json", messageId="NOT-OURS-1", status="delivered", msisdn="447700900123")
    assert resp.status_code == 204
    receipt = db.session.scalar(select(Receipt))
    assert receipt.vonage_id == "NOT-OURS-1" and receipt.part_id is None
    assert "msisdn" not in receipt.payload  # no phone numbers kept in the raw payload


def test_receipt_racing_the_send_answer_is_absorbed(app, fake, chat, client):
    """The DLR can arrive before the worker records the send's answer; it must still count."""
    msg = queue_to_party(chat, "b", "relay", "fast receipt")
    db.session.commit()
    [job] = outbox.claim(5)
    assert job.message_id == msg.id
    result = outbox.gateway().send(to=job.to, sender=job.sender, text=job.text, client_ref=job.client_ref)
    assert dlr(client, "form", messageId=result.message_ids[0], status="delivered",
               **{"client-ref": job.client_ref}).status_code == 204
    assert state(msg) == "sending"
    assert outbox.settle(job, result) == "delivered"
    assert state(msg) == "delivered"


@pytest.mark.parametrize(
    ("params", "field"),
    [({"status": "delivered"}, "messageId"), ({"messageId": "X", "status": "bogus"}, "status"),
     ({"messageId": "X" * 65, "status": "delivered"}, "messageId")],
)
def test_bad_receipts_are_4xx(app, client, params, field):
    resp = dlr(client, "form", **params)
    assert resp.status_code == 400 and resp.get_json()["field"] == field
    assert db.session.scalar(select(func.count()).select_from(Receipt)) == 0


def test_status_from_parts_rules():
    assert message_status_from_parts([], "submitted") == "submitted"
    assert message_status_from_parts(["delivered"], "submitted", expected=2) == "submitted"
    assert message_status_from_parts(["delivered", "delivered"], "submitted", expected=2) == "delivered"
    assert message_status_from_parts(["delivered", "undelivered"], "submitted") == "failed"
    assert message_status_from_parts(["accepted", "buffered"], "submitted") == "submitted"
