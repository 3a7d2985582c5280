"""Failed deliveries on the chat page and in the API: the reason in words, every attempt kept, and an
incomplete multipart text flagged (issue 11, item 4 and 6)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from webapp import events
from webapp.extensions import db
from webapp.gateway import SendResult
from webapp.models import Chat, Message, utcnow
from webapp.outbox import drain_once, reconcile_due
from webapp.queries import chat_rows
from webapp.services.inbound import flush_expired_parts
from webapp.services.outbound import resend_message

A, B = "+447700900111", "+447700900222"


class Scripted:
    """A gateway that answers each send with the next scripted result (then accepts everything)."""

    name = "scripted"

    def __init__(self, *results: SendResult) -> None:
        self.results = list(results)
        self.sent: list[str] = []

    def send(self, *, to, sender, text, client_ref):
        self.sent.append(text)
        if self.results:
            return self.results.pop(0)
        return SendResult(True, status="0", message_ids=[f"V{len(self.sent)}"])


@pytest.fixture
def app_overrides():
    return {"OUTBOX_RECONCILE_SECONDS": 20, "OUTBOX_RETRY_BASE_SECONDS": 0.001, "OUTBOX_RETRY_CAP_SECONDS": 0.002,
            "AUTO_REPLY": False}


@pytest.fixture
def operator_client(app, client):
    from webapp.dashboard.auth import create_operator

    create_operator("maria", "correct horse battery")
    page = client.get("/login")
    token = re.search(rb'name="csrf_token" value="([^"]+)"', page.data).group(1).decode()
    resp = client.post("/login", data={"name": "maria", "password": "correct horse battery", "csrf_token": token})
    assert resp.status_code in (302, 303)
    return client


@pytest.fixture
def chat(operator_client, api_headers):
    created = operator_client.post("/api/chats", json={"a": A, "b": B, "a_label": "Customer", "b_label": "Driver"},
                                   headers=api_headers).json
    drain_once()
    return created


def inbound(client, chat, text, message_id, sender=A, **extra):
    resp = client.post("/webhooks/inbound-sms", data={"msisdn": sender[1:], "to": chat["proxy_number"][1:],
                                                      "text": text, "messageId": message_id, **extra})
    assert resp.status_code == 204, resp.data


def receipt(client, msg: Message, status: str, err_code: str):
    [part] = msg.parts
    resp = client.post("/webhooks/delivery-receipt", data={
        "messageId": part.vonage_id, "status": status, "err-code": err_code, "client-ref": f"m{msg.id}",
        "msisdn": msg.to_number[1:], "to": msg.from_number[1:]})
    assert resp.status_code in (200, 204), resp.data


def page_of(client, chat) -> str:
    return client.get(f"/chats/{chat['id']}").get_data(as_text=True)


def attempts(page: str) -> list[tuple[str, str]]:
    return re.findall(r'<li class="attempt[^"]*" data-attempt="(\d+)" data-status="(\w+)"', page)


def relay_of(text: str) -> Message:
    return db.session.query(Message).filter_by(kind="relay", text=text).order_by(Message.id.desc()).first()


def test_a_failed_receipt_is_explained_with_what_to_do(app, operator_client, chat, api_headers):
    inbound(operator_client, chat, "At the gate", "in-1")
    drain_once()
    relay = relay_of("At the gate")
    receipt(operator_client, relay, "failed", "6")
    db.session.expire_all()
    assert db.session.get(Message, relay.id).status == "failed"

    page = page_of(operator_client, chat)
    problem = page.split('class="delivery-problem"')[1].split("</div>")[0]
    assert "Not delivered to Driver" in problem
    assert "The carrier&#39;s spam filter blocked the text" in problem
    assert "What to do: Rephrase it without links or sales words and resend" in problem
    assert "(err-code 6: Anti-Spam Rejection)" in problem
    assert f'id="resend-{relay.id}"' in problem

    api = operator_client.get(f"/api/chats/{chat['id']}", headers=api_headers).json
    [failed] = [m for m in api["messages"] if m["id"] == relay.id]
    assert failed["error"] == "delivery failed (err-code 6)"  # unchanged
    assert failed["error_detail"]["code"] == 6 and failed["error_detail"]["source"] == "delivery_receipt"
    assert failed["error_detail"]["name"] == "Anti-Spam Rejection"
    assert all(m["error_detail"] is None for m in api["messages"] if m["id"] != relay.id)


def test_an_unknown_code_still_says_which(app, operator_client, chat):
    inbound(operator_client, chat, "Hello", "in-2")
    drain_once()
    receipt(operator_client, relay_of("Hello"), "rejected", "77")
    page = page_of(operator_client, chat)
    assert "err-code 77, a code this app does not know" in page


def failed_count(chat) -> int:
    db.session.expire_all()
    return chat_rows([db.session.get(Chat, chat["id"])])[0].failed


def test_a_resent_relay_keeps_its_failed_attempt(app, operator_client, chat, api_headers):
    inbound(operator_client, chat, "Running late", "in-3")
    drain_once()
    first = relay_of("Running late")
    receipt(operator_client, first, "failed", "2")
    assert failed_count(chat) == 1  # the chats list says this chat has a failed delivery
    copy = resend_message(first.id, requested_by="maria")
    drain_once()
    receipt(operator_client, copy, "delivered", "0")
    assert failed_count(chat) == 0  # resent and delivered: nothing is failed any more

    page = page_of(operator_client, chat)
    assert attempts(page) == [("1", "failed"), ("2", "delivered")]
    assert "The phone is switched off or out of coverage. (err-code 2)" in page
    assert "resent by maria" in page
    assert 'class="delivery-problem"' not in page  # nothing left to do
    entry = operator_client.get(f"/chats/{chat['id']}/messages/{copy.id}").get_data(as_text=True)
    assert f'data-ids="{first.source_id} {first.id} {copy.id}"' in entry  # a live update of either refreshes it
    assert attempts(entry) == [("1", "failed"), ("2", "delivered")]

    api = {m["id"]: m for m in operator_client.get(f"/api/chats/{chat['id']}", headers=api_headers).json["messages"]}
    assert api[first.id]["resent_as"] == copy.id and api[copy.id]["resend_of"] == first.id


def test_a_resent_dispatcher_message_stays_one_line_with_both_attempts(app, operator_client, chat, api_headers):
    app.extensions["sms_gateway"] = Scripted(SendResult(False, status="29", error="status 29: Non White-listed"))
    sent = operator_client.post(f"/api/chats/{chat['id']}/messages", json={"to": "b", "text": "Pickup moved"},
                                headers=api_headers).json["messages"]
    drain_once()
    copy = resend_message(sent[0]["id"], requested_by="maria")
    drain_once()
    page = page_of(operator_client, chat)
    assert page.count("Pickup moved") == 1  # one line, not two
    assert attempts(page) == [("1", "failed"), ("2", "submitted")]
    assert "trial account" in page  # send status 29 in words
    assert f'data-ids="{sent[0]["id"]} {copy.id}"' in page


def test_the_outbox_keeps_an_unconfirmed_attempt_it_sent_again(app, operator_client, chat, api_headers):
    gw = Scripted(SendResult(False, ambiguous=True, error="no answer: ReadTimeout"))
    app.extensions["sms_gateway"] = gw
    inbound(operator_client, chat, "Are you there?", "in-4")
    drain_once()
    relay = relay_of("Are you there?")
    assert relay.status == "unconfirmed"
    relay.next_attempt_at = utcnow() - timedelta(seconds=1)  # its window closed without a receipt
    db.session.commit()
    reconcile_due()
    drain_once()
    db.session.expire_all()
    relay = db.session.get(Message, relay.id)
    assert relay.status == "submitted" and len(gw.sent) == 2
    [earlier] = relay.meta["history"]
    assert earlier["status"] == "unconfirmed" and earlier["then"] == "resent"
    assert earlier["error"] == "no answer: ReadTimeout"  # without "waiting 20 s ..."

    page = page_of(operator_client, chat)
    assert attempts(page) == [("1", "unconfirmed"), ("2", "submitted")]
    assert "Vonage did not answer the send, so it may or may not have reached the phone." in page
    api = operator_client.get(f"/api/chats/{chat['id']}", headers=api_headers).json["messages"]
    [shown] = [m for m in api if m["id"] == relay.id]
    assert [h["status"] for h in shown["history"]] == ["unconfirmed"] and shown["resent"] == 1


def test_a_retried_send_keeps_the_failure_it_retried(app, operator_client, chat):
    # three throttled answers: the send and its two quick retries fail, then it is queued with backoff
    throttled = [SendResult(False, retryable=True, status="1", error="status 1: Throttled") for _ in range(3)]
    app.extensions["sms_gateway"] = Scripted(*throttled)
    inbound(operator_client, chat, "Traffic", "in-5")
    drain_once()
    relay = relay_of("Traffic")
    if relay.status == "queued":  # (a drain may already have retried it: its backoff is a millisecond here)
        relay.next_attempt_at = utcnow()
        db.session.commit()
        drain_once()
    page = page_of(operator_client, chat)
    assert attempts(page) == [("1", "failed"), ("2", "submitted")]
    assert "We sent faster than the Vonage account allows. (send status 1)" in page
    assert "retried automatically" in page


def test_a_first_send_that_goes_through_writes_no_history(app, operator_client, chat):
    inbound(operator_client, chat, "Fine", "in-6")
    drain_once()
    relay = relay_of("Fine")
    assert relay.status == "submitted" and relay.meta == {"parts_expected": 1}  # the hot path's row, untouched
    assert attempts(page_of(operator_client, chat)) == []


# ---------------------------------------------------------------- multipart


def part(client, chat, n, text, total=3, ref="MP1"):
    inbound(client, chat, text, f"{ref}-{n}", concat="true",
            **{"concat-ref": ref, "concat-total": str(total), "concat-part": str(n)})


def test_a_multipart_text_still_arriving_is_flagged_live(app, operator_client, chat):
    heard = []

    def listener(_sender, **data):
        heard.append(data)

    events.part_held.connect(listener)
    try:
        part(operator_client, chat, 1, "Hello ")
        part(operator_client, chat, 3, "end")
    finally:
        events.part_held.disconnect(listener)
    assert heard == [{"chat_id": chat["id"]}, {"chat_id": chat["id"]}]  # the page's doorbell
    transcript = operator_client.get(f"/chats/{chat['id']}/transcript").get_data(as_text=True)
    held = transcript.split('class="entry from-a held-parts"')[1].split("</li>")[0]
    assert "incomplete: 2 of 3 parts arrived" in held
    assert "waiting for part 2" in held
    assert "Customer" in held

    part(operator_client, chat, 2, "middle ")  # the set completes: relayed, no longer flagged
    transcript = operator_client.get(f"/chats/{chat['id']}/transcript").get_data(as_text=True)
    assert "held-parts" not in transcript and "incomplete" not in transcript
    assert "Hello middle end" in transcript


def test_a_multipart_text_relayed_incomplete_says_so(app, operator_client, chat):
    part(operator_client, chat, 1, "first ", total=4, ref="MP2")
    part(operator_client, chat, 4, " last", total=4, ref="MP2")
    later = utcnow() + timedelta(seconds=app.config["MULTIPART_TIMEOUT_SECONDS"] + 1)
    [stored] = flush_expired_parts(now=later)
    transcript = operator_client.get(f"/chats/{chat['id']}/transcript").get_data(as_text=True)
    assert "held-parts" not in transcript
    line = transcript.split(f'id="entry-{stored}"')[1].split("</li>")[0]
    assert "incomplete: 2 of 4 parts arrived (parts 2, 3 never came)" in line


def test_a_held_part_from_someone_outside_a_chat_is_not_shown(app, operator_client, chat):
    inbound(operator_client, chat, "x", "S-1", sender="+447700900999", concat="true",
            **{"concat-ref": "Z", "concat-total": "2", "concat-part": "1"})
    transcript = operator_client.get(f"/chats/{chat['id']}/transcript").get_data(as_text=True)
    assert "held-parts" not in transcript


# ---------------------------------------------------------------- the simulated carrier


def test_the_simulated_gateway_fails_deliveries_to_the_numbers_it_is_told(app, operator_client, chat, gateway):
    app.config["SIMULATED_FAILING_NUMBERS"] = f"{B}:14, +447700900333"
    inbound(operator_client, chat, "Can you hear me?", "sim-1")
    drain_once()
    gateway.flush_receipts(app)  # through /webhooks/delivery-receipt, as Vonage posts them
    db.session.expire_all()
    relay = relay_of("Can you hear me?")
    assert (relay.status, relay.error) == ("failed", "delivery failed (err-code 14)")
    assert "The person&#39;s carrier blocked the text" in page_of(operator_client, chat)


def test_failing_numbers_setting_is_checked():
    from webapp.config import ConfigError, from_env
    from webapp.gateway.simulated import failing_numbers

    assert failing_numbers("+447700900999:6, 447700900998") == {"+447700900999": "6", "+447700900998": "1"}
    with pytest.raises(ConfigError, match=r"SIMULATED_FAILING_NUMBERS.*E\.164"):
        from_env({"SIMULATED_FAILING_NUMBERS": "+447700900999:six"})
