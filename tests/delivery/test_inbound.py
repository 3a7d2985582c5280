"""Inbound SMS: dedupe (also concurrent), multipart reassembly, opt-out, and input that must not break it."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from werkzeug.serving import make_server

from tests.conftest import PROXIES
from webapp import outbox
from webapp.extensions import db
from webapp.models import Chat, HeldPart, Message, utcnow
from webapp.services.inbound import MISSING_MARKER, flush_expired_parts

from .conftest import A, B, drain_all, wire

FORM = "application/x-www-form-urlencoded"


def count(*where) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(Message).where(*where))


def relays() -> list[Message]:
    db.session.rollback()
    return list(db.session.scalars(select(Message).where(Message.kind == "relay").order_by(Message.id)))


# ---------------------------------------------------------------- idempotency


def test_same_message_id_is_acknowledged_and_relayed_once(app, fake, chat, post_inbound):
    for _ in range(3):
        assert post_inbound("only once", messageId="DUP-1").status_code == 204
    drain_all()
    assert [a["text"] for a in fake.accepted] == ["only once"]
    assert count(Message.direction == "in") == 1


def test_concurrent_copies_are_relayed_once(app, fake, chat, tmp_path):
    import requests

    srv = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_port}/webhooks/inbound-sms"
    barrier = threading.Barrier(12)
    codes: list[int] = []

    def send(i: int) -> None:
        params = {"msisdn": wire(A), "to": wire(PROXIES[0]), "text": f"race {i % 3}",
                  "messageId": f"RACE-{i % 3}"}
        barrier.wait()
        codes.append(requests.post(url, data=params, timeout=20).status_code)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    srv.shutdown()
    assert codes == [204] * 12
    drain_all()
    assert sorted(a["text"] for a in fake.accepted) == ["race 0", "race 1", "race 2"]


# ---------------------------------------------------------------- multipart


def part(post_inbound, n: int, text: str, total: int = 3, ref: str = "A1", **kw):
    return post_inbound(text, messageId=kw.pop("messageId", f"{ref}-P{n}"), concat="true",
                        **{"concat-ref": ref, "concat-total": str(total), "concat-part": str(n)}, **kw)


@pytest.mark.parametrize("order", [(1, 2, 3), (3, 1, 2), (2, 3, 1)])
def test_parts_are_relayed_once_in_part_order(app, fake, chat, post_inbound, order):
    texts = {1: "Hello ", 2: "from the ", 3: "other side"}
    for n in order:
        assert part(post_inbound, n, texts[n]).status_code == 204
        if n != order[-1]:
            assert relays() == []
    drain_all()
    assert [a["text"] for a in fake.accepted] == ["Hello from the other side"]
    assert count(Message.direction == "in") == 1


def test_repeated_part_is_ignored(app, fake, chat, post_inbound):
    part(post_inbound, 1, "one ")
    part(post_inbound, 1, "one ")  # Vonage's retry: same messageId
    part(post_inbound, 1, "one ", messageId="OTHER-ID")  # same part under another id
    part(post_inbound, 2, "two ")
    part(post_inbound, 3, "three")
    part(post_inbound, 2, "two ")  # a late repeat after the set was relayed
    drain_all()
    assert [a["text"] for a in fake.accepted] == ["one two three"]
    flush_expired_parts(now=utcnow() + timedelta(days=1))
    drain_all()
    assert len(fake.accepted) == 1


def test_sets_are_kept_apart_by_sender_and_ref(app, fake, chat, post_inbound):
    part(post_inbound, 1, "a1 ", total=2, ref="R1")
    part(post_inbound, 1, "b1 ", total=2, ref="R1", sender=B, messageId="B-1")
    part(post_inbound, 2, "a2", total=2, ref="R1")
    part(post_inbound, 2, "b2", total=2, ref="R1", sender=B, messageId="B-2")
    drain_all()
    assert sorted(a["text"] for a in fake.accepted) == ["a1 a2", "b1 b2"]


def test_incomplete_set_is_relayed_with_a_marker_after_the_timeout(app, fake, chat, post_inbound):
    part(post_inbound, 1, "first ", ref="LOST")
    part(post_inbound, 3, " third", ref="LOST")
    assert flush_expired_parts() == []  # not yet
    later = utcnow() + timedelta(seconds=app.config["MULTIPART_TIMEOUT_SECONDS"] + 1)
    [stored_id] = flush_expired_parts(now=later)
    drain_all()
    marker = MISSING_MARKER.format(part=2, total=3)
    assert [a["text"] for a in fake.accepted] == [f"first {marker} third"]
    inbound = db.session.get(Message, stored_id)
    assert inbound.meta["incomplete"] is True and inbound.meta["missing"] == [2]
    assert "1 of 3 parts never arrived (part 2)" in inbound.error  # what the operator sees
    still_held = select(func.count()).select_from(HeldPart).where(HeldPart.message_id.is_(None))
    assert db.session.scalar(still_held) == 0


def test_outbox_housekeeping_flushes_stale_parts(app, fake, chat, post_inbound):
    part(post_inbound, 1, "alone", ref="OLD")
    held = db.session.scalar(select(HeldPart))
    held.received_at = utcnow() - timedelta(hours=1)
    db.session.commit()
    drain_all()
    assert [a["text"] for a in fake.accepted] == ["alone" + MISSING_MARKER.format(part=2, total=3)
                                                  + MISSING_MARKER.format(part=3, total=3)]


@pytest.mark.parametrize(
    "fields",
    [{"concat-ref": "X", "concat-total": "3", "concat-part": "4"},
     {"concat-ref": "X", "concat-total": "three", "concat-part": "1"},
     {"concat-ref": "", "concat-total": "2", "concat-part": "1"},
     {"concat-ref": "X", "concat-total": "0", "concat-part": "0"}],
)
def test_bad_concat_fields_are_4xx(app, chat, post_inbound, fields):
    resp = post_inbound("x", **fields)
    assert resp.status_code == 400 and "concat" in resp.get_json()["error"]


# ---------------------------------------------------------------- opt-out


@pytest.mark.parametrize("word", ["STOP", "stop", "StopAll", "UNSUBSCRIBE", "cancel", "END", "Quit!"])
def test_stop_words_end_the_chat_and_notify_the_other_party(app, fake, chat, post_inbound, word):
    assert post_inbound(word, sender=B).status_code == 204
    drain_all()
    db.session.expire_all()
    ended = db.session.get(Chat, chat.id)
    assert ended.status == "ended" and ended.ended_reason == "opt_out"
    assert [(a["to"], a["text"]) for a in fake.accepted] == [(wire(A), app.config["OPT_OUT_TEMPLATE"])]
    inbound = db.session.scalar(select(Message).where(Message.direction == "in"))
    assert inbound.status == "opt_out"  # the dispatcher sees why
    # after opting out, nothing more is relayed to them
    assert post_inbound("are you there?", sender=A).status_code == 204
    drain_all()
    assert len(fake.accepted) == 1


@pytest.mark.parametrize("text", ["Please don't stop", "stop at the corner", "The END of it", "quit it"])
def test_stop_words_inside_a_sentence_are_ordinary_text(app, fake, chat, post_inbound, text):
    post_inbound(text)
    drain_all()
    assert [a["text"] for a in fake.accepted] == [text]
    assert db.session.get(Chat, chat.id).status == "active"


# ---------------------------------------------------------------- bad input


def test_webhook_before_any_chat_exists_is_stored_unrouted(app, fake, post_inbound):
    assert post_inbound("hello?").status_code == 204
    assert count(Message.status == "unrouted") == 1
    drain_all()
    assert fake.accepted == []  # AUTO_REPLY is off in these tests


def test_unknown_numbers_are_stored_unrouted(app, chat, post_inbound):
    assert post_inbound("who?", sender="+447700900999").status_code == 204
    assert post_inbound("who?", to="+447700900998").status_code == 204
    assert count(Message.status == "unrouted") == 2


def test_empty_text_is_stored_not_relayed(app, fake, chat, post_inbound):
    assert post_inbound("").status_code == 204
    drain_all()
    assert fake.accepted == [] and count(Message.direction == "in") == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [({"to": "447700900001", "text": "x"}, "msisdn"), ({"msisdn": "447700900100", "text": "x"}, "to"),
     ({"msisdn": "not a number", "to": "447700900001"}, "msisdn"),
     ({"msisdn": "447700900100", "to": "447700900001", "text": "x" * 10_001}, "text")],
)
def test_missing_or_bad_fields_are_4xx_naming_the_field(app, client, params, field):
    resp = client.post("/webhooks/inbound-sms", data=params)
    assert resp.status_code == 400
    assert resp.get_json()["field"] == field


def test_invalid_utf8_and_garbage_bodies_are_4xx(app, client, chat):
    cases = [
        dict(data=b"msisdn=447700900100&to=447700900001&text=%ff%fe", content_type=FORM),
        dict(data=b"msisdn=447700900100&to=447700900001&text=\xff", content_type=FORM),
        dict(data=b"\xff\xfe{", content_type="application/json"),
        dict(data=b"[1, 2]", content_type="application/json"),
        dict(data=b'{"msisdn": "447700900100", "to": "447700900001", "text": "\\ud800"}',
             content_type="application/json"),
        dict(data=b"msisdn=1&msisdn=2&to=447700900001", content_type=FORM),
    ]
    for case in cases:
        resp = client.post("/webhooks/inbound-sms", **case)
        assert resp.status_code == 400, case
        assert "error" in resp.get_json()
    bad_query = "/webhooks/inbound-sms?msisdn=447700900100&to=447700900001&text=%C0%AF"
    assert client.get(bad_query).status_code == 400
    assert count(Message.direction == "in") == 0


def test_oversized_body_is_413(app, client):
    resp = client.post("/webhooks/inbound-sms", data={"text": "x" * 300_000})
    assert resp.status_code == 413
    assert "error" in resp.get_json()


def test_relayed_text_round_trips_unicode(app, fake, chat, post_inbound):
    post_inbound("Ça va? 👍 & = done")
    drain_all()
    [sent] = fake.accepted
    assert sent["text"] == "Ça va? 👍 & = done" and sent["type"] == "unicode"
    assert outbox.drain_once() == 0
