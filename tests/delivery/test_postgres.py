"""The delivery guarantees on PostgreSQL, including two outbox drainers running at once (issue 5's setup)."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator

import pytest

from tests.fakes.vonage import Faults
from webapp import outbox
from webapp.extensions import db
from webapp.services.chats import queue_to_party, start_chat, validate_chat_request

from .conftest import drain_all, wire

pytestmark = pytest.mark.postgres

PG = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_url() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    name = f"delivery_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        if os.environ.get("CI"):
            raise
        pytest.skip("PostgreSQL is not running")
    admin.execute(f'CREATE DATABASE "{name}"')
    base = PG.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    yield f"{base}/{name}"
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def delivery_overrides(pg_url):
    return {"SQLALCHEMY_DATABASE_URI": pg_url}


def test_relay_dedupe_and_multipart_on_postgres(app, fake, chat, post_inbound):
    assert db.engine.dialect.name == "postgresql"
    post_inbound("plain", messageId="PG-1")
    post_inbound("plain", messageId="PG-1")
    for n, text in ((2, "world"), (1, "hello "), (2, "world")):
        post_inbound(text, messageId=f"PGC-{n}", concat="true",
                     **{"concat-ref": "9", "concat-total": "2", "concat-part": str(n)})
    drain_all()
    assert [a["text"] for a in fake.accepted] == ["plain", "hello world"]


def test_two_drainers_keep_order_and_send_each_message_once(app, fake):
    fake.faults = Faults(throttle=0.2, http500=0.05)
    app.config["OUTBOX_CONCURRENCY"] = 3
    chats = [start_chat(validate_chat_request(f"+4477005{1000 + i:04d}", f"+4477006{1000 + i:04d}"))
             for i in range(6)]
    for round_ in range(8):
        for c in chats:
            queue_to_party(c, "b", "relay", f"{c.id}:{round_}")
    db.session.commit()
    errors: list[BaseException] = []

    def drainer() -> None:
        try:
            with app.app_context():
                drain_all()
                db.session.remove()
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=drainer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    drain_all()
    for c in chats:
        got = [a["text"] for a in fake.accepted_for(wire(c.b_number)) if ":" in a["text"]]
        assert got == [f"{c.id}:{r}" for r in range(8)]
    assert len([a for a in fake.accepted if ":" in a["text"]]) == 48


def test_receipt_reconciles_on_postgres(app, fake, chat, client):
    fake.faults = Faults(drop_after_accept=1.0)
    msg = queue_to_party(chat, "b", "relay", "ambiguous on pg")
    db.session.commit()
    outbox.drain_once()
    fake.faults = Faults()
    [accepted] = fake.accepted
    resp = client.post("/webhooks/delivery-receipt", data={
        "messageId": accepted["message-ids"][0], "status": "delivered", "client-ref": f"m{msg.id}"})
    assert resp.status_code == 204
    db.session.expire_all()
    assert db.session.get(type(msg), msg.id).status == "delivered"
