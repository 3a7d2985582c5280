"""The invariants that must hold under real concurrency, on SQLite and on PostgreSQL alike.

Each test runs real threads, each with its own app context and so its own session and database connection,
released together by a barrier so their transactions overlap.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from webapp import services
from webapp.extensions import db
from webapp.models import Chat, Message, Route
from webapp.outbox import drain_once
from webapp.services.chats import validate_chat_request

THREADS = 8


def run_together(app: Flask, n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run work(i) in n threads at once; return results (exceptions included) in order."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def target(i: int) -> None:
        with app.app_context():
            barrier.wait()
            try:
                results[i] = work(i)
            except BaseException as exc:
                results[i] = exc
            finally:
                db.session.remove()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_concurrent_pairings_never_cross_routes(app: Flask):
    """Eight dispatchers pair the same person with eight others at once, with three proxy numbers.

    The routing key (person, proxy number) stays unique: at most three pairings succeed, the rest get a
    clear 409, and no error escapes as anything else.
    """
    shared = "+447700900100"
    others = [f"+4477009002{i:02d}" for i in range(THREADS)]

    def pair(i: int) -> int:
        req = validate_chat_request(shared, others[i])
        return services.start_chat(req).id

    results = run_together(app, THREADS, pair)
    unexpected = [r for r in results if isinstance(r, BaseException) and not isinstance(r, services.Conflict)]
    assert not unexpected, unexpected
    created = [r for r in results if isinstance(r, int)]
    assert len(created) == 3  # one per proxy number
    keys = db.session.execute(select(Route.real_number, Route.proxy_number)).all()
    assert len(keys) == len(set(keys)) == 6
    shared_proxies = [p for real, p in keys if real == shared]
    assert sorted(shared_proxies) == sorted({p for p in shared_proxies})
    assert db.session.scalar(select(func.count()).select_from(Chat).where(Chat.status == "active")) == 3


def test_concurrent_duplicate_webhooks_store_one_message(app: Flask):
    """Vonage retries: eight copies of one messageId arrive at once; one message and one relay are stored."""
    req = validate_chat_request("+447700900100", "+447700900200")
    chat = services.start_chat(req)
    params = {
        "msisdn": "447700900100",
        "to": chat.proxy_number.lstrip("+"),
        "text": "hello",
        "messageId": "0A0000000123ABCD",
        "type": "text",
    }
    client = app.test_client()

    results = run_together(
        app, THREADS, lambda _i: client.post("/webhooks/inbound-sms", data=params).status_code
    )
    assert results == [204] * THREADS
    inbound = db.session.scalars(select(Message).where(Message.provider_id == "0A0000000123ABCD")).all()
    assert len(inbound) == 1
    relays = db.session.scalar(
        select(func.count())
        .select_from(Message)
        .where(Message.kind == "relay", Message.source_id == inbound[0].id)
    )
    assert relays == 1


def test_concurrent_outbox_drains_send_each_message_once(app: Flask, gateway):
    """Four senders drain one backlog at once: every message is sent exactly once."""
    pairs = [validate_chat_request(f"+4477009001{i:02d}", f"+4477009003{i:02d}") for i in range(3)]
    chats = [services.start_chat(p) for p in pairs]
    for n in range(40):
        chat = chats[n % 3]
        services.receive_sms(
            {
                "msisdn": chat.a_number.lstrip("+"),
                "to": chat.proxy_number.lstrip("+"),
                "text": f"m{n}",
                "messageId": f"ID{n:04d}",
            }
        )
    queued = db.session.scalar(select(func.count()).select_from(Message).where(Message.status == "queued"))
    assert queued == 6 + 40  # introductions + relays

    results = run_together(app, 4, lambda _i: drain_once(limit=5))
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert sum(results) == queued
    refs = Counter(s["client_ref"] for s in gateway.sent)
    assert len(refs) == queued and set(refs.values()) == {1}
    db.session.expire_all()
    statuses = Counter(db.session.scalars(select(Message.status).where(Message.direction == "out")))
    assert statuses == {"submitted": queued}


def test_concurrent_webhooks_for_one_chat_all_land(app: Flask):
    """Distinct messages for one chat arriving at once are all stored and all relayed (no lost update)."""
    chat = services.start_chat(validate_chat_request("+447700900100", "+447700900200"))
    client = app.test_client()

    def post(i: int) -> int:
        return client.post(
            "/webhooks/inbound-sms",
            data={
                "msisdn": "447700900100",
                "to": chat.proxy_number.lstrip("+"),
                "text": f"t{i}",
                "messageId": f"M{i}",
            },
        ).status_code

    assert run_together(app, THREADS, post) == [204] * THREADS
    db.session.expire_all()
    assert db.session.get(Chat, chat.id).unread == THREADS
    relays = db.session.scalar(select(func.count()).select_from(Message).where(Message.kind == "relay"))
    assert relays == THREADS
