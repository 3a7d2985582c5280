"""The outbox's promises, tried as a firm's traffic hits them: one conversation never stalls, no message or job
stops the line, a crash loses and doubles nothing. Real server processes, the real SDK, the fake Vonage, and
faults injected into the real database (triggers), not mocks.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select, text, update

from bench.one_chat import MIX
from bench.one_chat import run as one_chat
from tests.fakes.vonage import Faults
from webapp import outbox
from webapp.extensions import db
from webapp.jobs import Job, Scheduler, default_jobs, run_once
from webapp.models import HeldPart, Lane, Message, utcnow
from webapp.services.chats import queue_to_party
from webapp.services.inbound import MISSING_RUN_MARKER

from .conftest import A, B, drain_all, wire


def queue(chat, body: str, side: str = "b") -> Message:
    msg = queue_to_party(chat, side, "relay", body)
    db.session.commit()
    return msg


def reload(msg: Message) -> Message:
    db.session.expire_all()
    return db.session.get(Message, msg.id)


def poison(name: str, table: str, when: str, timing: str = "BEFORE INSERT") -> None:
    """A trigger that makes the database refuse some writes, as a broken row or a bug would."""
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text(
            f"CREATE FUNCTION {name}() RETURNS trigger AS $$ BEGIN IF {when} THEN "
            f"RAISE EXCEPTION 'poisoned row'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"))
        db.session.execute(text(
            f"CREATE TRIGGER {name} {timing} ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()"))
    else:
        db.session.execute(text(
            f"CREATE TRIGGER {name} {timing} ON {table} WHEN {when} BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"))
    db.session.commit()


def lanes_held() -> int:
    return db.session.scalar(select(func.count()).select_from(Lane).where(Lane.leased_until.is_not(None)))


# ------------------------------------------------------------------ a conversation never stalls


def test_an_ambiguous_send_does_not_hold_the_conversation(app, fake, chat):
    """The connection drops after Vonage took text 1: texts 2 and 3 to the same person go out at once."""
    fake.faults = Faults(drop_after_accept=1.0)
    first = queue(chat, "one")
    outbox.drain_once()
    assert reload(first).status == "unconfirmed"
    fake.faults = Faults()
    second, third = queue(chat, "two"), queue(chat, "three")
    outbox.drain_once()
    assert reload(second).status == "submitted" and reload(third).status == "submitted"
    assert [a["text"] for a in fake.accepted_for(wire(B))] == ["one", "two", "three"]
    assert lanes_held() == 0


def test_an_unconfirmed_send_without_receipt_is_sent_again_and_shown_as_resent(app, fake, chat, client,
                                                                               api_headers):
    fake.faults = Faults(drop=1.0)  # the connection closed before Vonage took it
    msg = queue(chat, "lost in transit")
    outbox.drain_once()
    msg = reload(msg)
    assert msg.status == "unconfirmed"
    assert msg.next_attempt_at <= utcnow() + timedelta(seconds=app.config["OUTBOX_RECONCILE_SECONDS"])
    fake.faults = Faults()
    msg.next_attempt_at = utcnow() - timedelta(seconds=1)  # the window closed with no receipt
    db.session.commit()
    drain_all()
    msg = reload(msg)
    assert msg.status == "submitted" and msg.meta["auto_resent"] == 1
    assert [a["text"] for a in fake.accepted] == ["lost in transit"]
    shown = client.get(f"/api/chats/{chat.id}", headers=api_headers).get_json()
    [api_msg] = [m for m in shown["messages"] if m["id"] == msg.id]
    assert api_msg["resent"] == 1 and api_msg["status"] == "submitted"


def test_a_retry_keeps_its_place_in_the_lane(app, fake, chat):
    """Throttled three times in a row: the texts behind it wait for it, so they still arrive in order."""
    fake.faults = Faults(throttle=1.0)
    texts = ["first", "second", "third"]
    for body in texts:
        queue(chat, body)
    outbox.drain_once()
    assert fake.accepted == []
    fake.faults = Faults()
    drain_all()
    assert [a["text"] for a in fake.accepted_for(wire(B))] == texts


def test_a_busy_lane_is_sent_in_batches_in_order(app, fake, chat):
    app.config["OUTBOX_LANE_BATCH"] = 7
    texts = [f"burst {i}" for i in range(30)]
    for body in texts:
        queue(chat, body)
    [batch] = outbox.claim(10)
    assert len(batch.jobs) == 7 and [j.text for j in batch.jobs] == texts[:7]
    outbox.settle_batch(batch, outbox.send_batch(outbox.gateway(), outbox.rate_limiter(), batch, 5))
    drain_all()
    assert [a["text"] for a in fake.accepted_for(wire(B))] == texts


@pytest.mark.slow
def test_fault_mix_in_one_chat_every_text_once_and_clean_texts_fast(database_url, tmp_path):
    """300 texts between two people while Vonage throttles, fails and drops connections (the issue's mix)."""
    db_kind = "postgres" if database_url.startswith("postgresql") else "sqlite"
    result = one_chat(n=300, faults=MIX, db=db_kind, seed=3, work=tmp_path)
    assert result["fake_outcomes"].get("status-1", 0) > 10 and result["fake_outcomes"].get("http-500", 0) > 3
    assert (result["lost"], result["duplicated"], result["delivered_once"]) == (0, 0, 300), result
    assert result["last_relay_after_last_ack_s"] < 60, result
    assert result["latency_clean_p95_s"] < 5, result


# ------------------------------------------------------------------ nothing lost, nothing doubled: kill -9


@pytest.mark.slow
def test_kill_9_after_200_acknowledgements_each_text_once_within_30_s_of_restart(
    fake, server_factory, database_url
):
    server = server_factory(DATABASE_URL=database_url, OUTBOX_POLL_SECONDS=0.5)
    server.start()
    fake.dlr_url = server.url + "/webhooks/delivery-receipt"
    fake.dlr_retries, fake.dlr_retry_interval = 60, 0.5  # Vonage retries receipts for 72 h
    headers = {"Authorization": "Bearer crash-token-0123456789abcdef0123456789"}
    chat = requests.post(server.url + "/api/chats", json={"a": A, "b": B}, headers=headers, timeout=10)
    assert chat.status_code == 201, chat.text
    proxy = chat.json()["proxy_number"].lstrip("+")
    assert fake.wait_for(2, timeout=20)
    fake.faults = Faults(slow=1.0, slow_seconds=0.02)  # sends are in flight when the process dies

    acked: dict[str, float] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def poster(start: int) -> None:
        i = start
        with requests.Session() as s:
            while not stop.is_set():
                body = f"kill {i}"
                params = {"msisdn": (A if i % 2 else B).lstrip("+"), "to": proxy, "text": body,
                          "messageId": f"KILL{i:06d}", "type": "text"}
                try:
                    resp = s.post(server.url + "/webhooks/inbound-sms", data=params, timeout=5)
                except requests.RequestException:
                    return
                if resp.status_code == 204:
                    with lock:
                        acked[body] = time.time()
                i += 8

    threads = [threading.Thread(target=poster, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    while len(acked) < 200:
        time.sleep(0.001)
    server.kill()
    stop.set()
    for t in threads:
        t.join()
    wanted = set(acked)
    server.start()
    restarted = time.time()

    deadline = restarted + 45
    while time.time() < deadline:
        if wanted <= {a["text"] for a in fake.accepted}:
            break
        time.sleep(0.2)
    time.sleep(2.0)  # a late duplicate would show here
    counts = Counter(a["text"] for a in fake.accepted if a["text"].startswith("kill "))
    lost = sorted(t for t in wanted if counts[t] == 0)
    doubled = sorted(t for t in wanted if counts[t] > 1)
    assert lost == [] and doubled == [], (lost[:10], doubled[:10])
    arrived = {a["text"]: a["time"] for a in fake.accepted}
    latest = max(arrived[t] for t in wanted)
    assert latest - restarted < 30, f"the last acknowledged text arrived {latest - restarted:.1f} s after restart"


# ------------------------------------------------------------------ no message stops the line


def test_a_settle_that_raises_is_isolated_and_the_rest_flows(app, fake, chat):
    """The database refuses to store one message's parts: it still gets a state and a reason, its lane is
    freed, and the texts behind it and to the other person go out."""
    victim = queue(chat, "poisoned")
    behind = queue(chat, "behind it")
    other = queue(chat, "to the other side", side="a")
    poison("poison_parts", "sms_parts", f"NEW.message_id = {victim.id}")
    drain_all()
    victim = reload(victim)
    assert victim.status == "submitted" and "could not record the send" in victim.error
    assert reload(behind).status == "submitted" and reload(other).status == "submitted"
    assert [a["text"] for a in fake.accepted_for(wire(B))] == ["poisoned", "behind it"]
    assert [a["text"] for a in fake.accepted_for(wire(A))] == ["to the other side"]
    assert lanes_held() == 0


def test_a_repeated_gateway_message_id_never_breaks_a_settle(app, fake, chat, client):
    fake.fixed_message_id = "SAME-ID-EVERY-TIME"
    first, second = queue(chat, "first"), queue(chat, "second", side="a")
    drain_all()
    assert reload(first).status == "submitted" and reload(second).status == "submitted"
    resp = client.post("/webhooks/delivery-receipt", data={
        "messageId": "SAME-ID-EVERY-TIME", "status": "delivered", "client-ref": f"m{second.id}"})
    assert resp.status_code == 204
    assert reload(second).status == "delivered" and reload(first).status == "submitted"


def test_a_message_that_breaks_reconciliation_is_marked_and_the_others_reconcile(app, fake, chat):
    fake.faults = Faults(drop=1.0)
    bad, good = queue(chat, "bad"), queue(chat, "good", side="a")
    outbox.drain_once()
    fake.faults = Faults()
    assert reload(bad).status == reload(good).status == "unconfirmed"
    db.session.execute(update(Message).where(Message.id.in_([bad.id, good.id]))
                       .values(next_attempt_at=utcnow() - timedelta(seconds=1)))  # windows closed, no receipt
    db.session.commit()
    poison("poison_requeue", "messages", f"NEW.id = {bad.id} AND NEW.status = 'queued'", "BEFORE UPDATE")
    assert run_once(app, ["reconcile-unconfirmed-sends"]) == {"reconcile-unconfirmed-sends": True}
    bad = reload(bad)
    assert bad.status == "failed" and "reconciling message failed" in bad.error
    drain_all()
    assert reload(good).status == "submitted"


def test_a_failing_job_never_stops_the_others_and_shows_on_healthz(app, fake, chat, client):
    fake.faults = Faults(drop=1.0)
    msg = queue(chat, "needs reconciling")
    outbox.drain_once()
    fake.faults = Faults()
    m = reload(msg)
    m.next_attempt_at = utcnow() - timedelta(seconds=1)
    db.session.commit()

    def broken() -> None:
        db.session.execute(text("SELECT * FROM no_such_table"))

    jobs = [Job("broken", 0.05, broken), *default_jobs(app)]
    scheduler = Scheduler(app, jobs)
    scheduler.start()
    try:
        deadline = time.monotonic() + 10
        while reload(msg).status == "unconfirmed" and time.monotonic() < deadline:
            db.session.rollback()
            time.sleep(0.05)
        assert reload(msg).status == "queued"  # reconciled (sent again) although "broken" failed meanwhile
        health = client.get("/healthz").get_json()
        assert health["jobs"]["broken"]["failing"] is True
        assert health["jobs"]["broken"]["consecutive_failures"] >= 1
        assert health["jobs"]["reconcile-unconfirmed-sends"]["failing"] is False
    finally:
        scheduler.stop()


def test_a_huge_incomplete_multipart_set_is_relayed_and_stops_nothing(app, fake, chat, post_inbound):
    """The issue's repro: one part of a 100-part set times out; its reason is longer than the column."""
    assert post_inbound("alone", concat="true", **{"concat-ref": "77", "concat-total": "100",
                                                   "concat-part": "1"}).status_code == 204
    held = db.session.scalar(select(HeldPart))
    held.received_at = utcnow() - timedelta(hours=1)
    db.session.commit()
    assert post_inbound("meanwhile, a normal text", sender=B).status_code == 204
    drain_all()
    texts = [a["text"] for a in fake.accepted]
    assert "meanwhile, a normal text" in texts
    [assembled] = [t for t in texts if t.startswith("alone")]
    assert MISSING_RUN_MARKER.format(first=2, last=100, total=100) in assembled  # one marker, not 99
    inbound = db.session.scalar(select(Message).where(Message.text.startswith("alone"), Message.direction == "in"))
    assert len(inbound.error) <= Message.error.type.length and "never arrived" in inbound.error


def test_a_living_worker_renews_its_leases_and_recovery_leaves_them_alone(app, fake, chat):
    queue(chat, "slow but alive")
    [batch] = outbox.claim(5)
    first = batch.lease_until
    lane = db.session.scalar(select(Lane).where(Lane.recipient == B))
    lane.leased_until = utcnow() + timedelta(milliseconds=500)  # about to run out
    db.session.commit()
    batch.lease_until = lane.leased_until
    outbox.renew([batch])
    assert batch.lease_until > first - timedelta(seconds=1)
    db.session.expire_all()
    assert db.session.scalar(select(Lane.leased_until).where(Lane.recipient == B)) == batch.lease_until
    time.sleep(0.6)
    assert outbox.recover_interrupted() == 0  # renewed: not taken from a living worker
    stale = outbox.Batch(B, batch.jobs, first)  # a token that is no longer the lane's
    outbox.renew([stale])
    assert stale.lease_until == first
    outbox.settle_batch(batch, outbox.send_batch(outbox.gateway(), outbox.rate_limiter(), batch, 5))
    assert lanes_held() == 0 and [a["text"] for a in fake.accepted] == ["slow but alive"]


def test_a_throttled_send_whose_settle_raises_is_retried_not_failed(app, fake, chat):
    """Vonage did not take the text (throttled) and recording that raised: the fallback keeps it queued for a
    retry (sending again is safe), where failing it would lose a text to a transient database error."""
    victim = queue(chat, "throttled, then unlucky")
    fake.faults = Faults(throttle=1.0)
    poison("poison_settle", "messages",
           f"NEW.id = {victim.id} AND NEW.error LIKE 'status 1%' AND NEW.error NOT LIKE '%could not record%'",
           "BEFORE UPDATE")
    outbox.drain_once()
    victim = reload(victim)
    assert victim.status == "queued" and "could not record the send" in victim.error
    assert victim.next_attempt_at is not None
    fake.faults = Faults()
    drain_all()
    assert reload(victim).status == "submitted"
    assert [a["text"] for a in fake.accepted_for(wire(B))] == ["throttled, then unlucky"]
