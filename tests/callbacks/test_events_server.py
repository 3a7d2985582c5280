"""Event callbacks from the real server (`python -m webapp`, SQLite): a receiver that sleeps 10 s does not slow
relays down, and a server killed between retries loses no event and keeps each event's id.

SMS go through the real SDK over HTTPS to the local fake Vonage, which posts delivery receipts back.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from tests.conftest import PROXIES
from tests.delivery.conftest import ROOT, Server, free_port
from tests.fakes.receiver import Receiver
from tests.fakes.vonage import FakeVonage

from .conftest import SECRET

TOKEN = "events-token-0123456789abcdef0123456789"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def fake(tmp_path) -> Iterator[FakeVonage]:
    with FakeVonage(tmp_path / "certs") as f:
        yield f


@pytest.fixture
def server_factory(tmp_path, fake) -> Iterator[Callable[..., Server]]:
    made: list[Server] = []

    def _make(**settings: Any) -> Server:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VONAGE_", "OUTBOX_", "EVENTS_", "FLASK_"))}
        env.update({
            "PYTHONPATH": str(ROOT), "REQUESTS_CA_BUNDLE": str(fake.ca_path), "SECRET_KEY": "events-test",
            "PORT": str(port), "DATABASE_URL": f"sqlite:///{tmp_path / 'server.db'}", "SMS_GATEWAY": "vonage",
            "VONAGE_API_KEY": "key", "VONAGE_API_SECRET": "secret", "VONAGE_REST_HOST": fake.host,
            "VONAGE_TIMEOUT": "5", "VONAGE_MAX_SENDS_PER_SECOND": "100", "PROXY_NUMBERS": ",".join(PROXIES),
            "API_TOKEN": TOKEN, "AUTO_REPLY": "false", "LOG_LEVEL": "WARNING", "EVENTS_SECRET": SECRET,
            "WEBHOOKS_ALLOW_UNSIGNED": "true",
        })
        env.update({k: str(v) for k, v in settings.items()})
        server = Server(env, port, tmp_path / "server.log")
        made.append(server)
        return server

    yield _make
    for server in made:
        server.stop()


def stored_events(db_path) -> list[tuple[str, str, int | None, str]]:
    with sqlite3.connect(db_path, timeout=15) as conn:
        return conn.execute("SELECT public_id, type, chat_id, status FROM callback_events ORDER BY id").fetchall()


def stamp_arrivals(fake: FakeVonage) -> dict[str, float]:
    """When each text reached "Vonage" (by its text), like bench/relay.py."""
    arrived: dict[str, float] = {}
    original = fake._accept

    def stamp(params, ids, partial):
        arrived.setdefault(params.get("text", ""), time.monotonic())
        original(params, ids, partial)

    fake._accept = stamp
    return arrived


@pytest.mark.slow
def test_a_receiver_that_sleeps_10_s_never_delays_relays(fake, server_factory, tmp_path):
    with Receiver(secret=SECRET) as rx:
        rx.default_sleep = 10.0  # every event POST hangs 10 s (the app gives up after EVENTS_TIMEOUT_SECONDS=5)
        server = server_factory(EVENTS_URL=rx.url, EVENTS_RETRY_BASE_SECONDS=0.5, EVENTS_RETRY_CAP_SECONDS=1)
        fake.dlr_url = server.url + "/webhooks/delivery-receipt"
        arrived = stamp_arrivals(fake)
        server.start()
        chats = []
        for a, b in (("+447700900511", "+447700900611"), ("+447700900512", "+447700900612")):
            resp = requests.post(server.url + "/api/chats", json={"a": a, "b": b}, headers=HEADERS, timeout=10)
            assert resp.status_code == 201, resp.text
            chats.append(resp.json())
        assert rx.wait_for(lambda hits: len(hits) >= 2, timeout=10)  # event posts are now hanging

        sent: dict[str, float] = {}
        for i in range(20):
            chat = chats[i % 2]
            body = f"relay while the receiver sleeps {i}"
            form = {"msisdn": chat["a"].lstrip("+"), "to": chat["proxy_number"].lstrip("+"), "text": body,
                    "messageId": f"SLEEP{i:04d}", "type": "text"}
            sent[body] = time.monotonic()
            assert requests.post(server.url + "/webhooks/inbound-sms", data=form, timeout=10).status_code == 204
            time.sleep(0.25)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(t in arrived for t in sent):
            time.sleep(0.02)
        latencies = sorted(arrived[t] - sent[t] for t in sent if t in arrived)
        assert len(latencies) == len(sent), "a relay did not go out"
        # all of this happened while every event POST was still hanging or timing out
        assert not rx.accepted(), "the receiver was meant to be asleep throughout"
        assert latencies[-1] < 2.0, f"relay latency while the receiver sleeps: max {latencies[-1]:.3f} s"

        rx.default_sleep = 0.0  # the receiver wakes up: everything recorded meanwhile arrives, in order per chat
        db_path = tmp_path / "server.db"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = stored_events(db_path)
            if rows and all(r[3] == "delivered" for r in rows) and len(rows) >= 2 + 20 * 2:
                break
            time.sleep(0.2)
        rows = stored_events(db_path)
        assert all(r[3] == "delivered" for r in rows), [r for r in rows if r[3] != "delivered"][:3]
        got = rx.accepted()
        for chat in chats:
            assert [e["id"] for e in got if e["data"]["chat_id"] == chat["id"]] == \
                [r[0] for r in rows if r[2] == chat["id"]]
        timed_out = [h for h in rx.hits if h.slept >= 10]
        assert timed_out and all(h.event["id"] in {e["id"] for e in got} for h in timed_out)  # same ids, retried
        assert all(h.signature_ok for h in rx.hits)


@pytest.mark.slow
def test_killing_the_server_between_retries_and_mid_post_loses_no_event(fake, server_factory, tmp_path):
    with Receiver(secret=SECRET) as rx:
        rx.default = 500  # the backend is down; its third answer is slow, so the kill comes mid-post
        rx.answer(500, 500, ("sleep", 5.0, 500))
        server = server_factory(EVENTS_URL=rx.url, EVENTS_RETRY_BASE_SECONDS=0.2, EVENTS_RETRY_CAP_SECONDS=0.5,
                                EVENTS_TIMEOUT_SECONDS=2)
        fake.dlr_url = server.url + "/webhooks/delivery-receipt"
        fake.dlr_retries, fake.dlr_retry_interval = 40, 0.25  # Vonage retries receipts while we are down
        server.start()
        chat = requests.post(server.url + "/api/chats", json={"a": "+447700900521", "b": "+447700900621",
                                                               "reference": "crash-1"}, headers=HEADERS,
                             timeout=10).json()
        for i in range(3):
            form = {"msisdn": chat["a"].lstrip("+"), "to": chat["proxy_number"].lstrip("+"), "text": f"t{i}",
                    "messageId": f"KILL{i}", "type": "text"}
            assert requests.post(server.url + "/webhooks/inbound-sms", data=form, timeout=10).status_code == 204
        assert rx.wait_for(lambda hits: len(hits) >= 3, timeout=15)  # chat.created refused twice, then in flight
        tried_before = {h.event["id"] for h in rx.hits}
        server.kill()
        before_kill = stored_events(tmp_path / "server.db")
        assert before_kill and all(r[3] == "pending" for r in before_kill)

        rx.default = 200  # the backend is back; then so is the server
        server.start()
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            rows = stored_events(tmp_path / "server.db")
            if len(rows) >= 1 + 3 + 2 + 3 and all(r[3] == "delivered" for r in rows):
                break
            time.sleep(0.2)
        rows = stored_events(tmp_path / "server.db")
        assert all(r[3] == "delivered" for r in rows), rows
        got = rx.accepted()
        # every event recorded before the kill arrived after the restart, with the id it had before
        assert {r[0] for r in before_kill} <= {e["id"] for e in got}
        assert tried_before <= {e["id"] for e in got}
        # in the order they were recorded, each accepted exactly once
        assert [e["id"] for e in got] == [r[0] for r in rows]
        types = [e["type"] for e in got]
        assert types[0] == "chat.created" and types.count("message.received") == 3
        assert types.count("message.delivered") == 5  # two introductions, three relays


def test_event_sender_threads_are_apart_from_the_outbox(app_with_background):
    names = {t.name for t in threading.enumerate()}
    assert "events-sender" in names and "outbox-worker" in names


@pytest.fixture
def app_with_background(tmp_path):
    from tests.conftest import app_config
    from webapp import create_app, prepare_database
    from webapp.background import start_background

    with Receiver(secret=SECRET) as rx:
        app = create_app(app_config(tmp_path, EVENTS_URL=rx.url, EVENTS_SECRET=SECRET))
        prepare_database(app)
        background = start_background(app)
        try:
            yield app
        finally:
            background.stop()
            with app.app_context():
                from webapp.extensions import db

                db.engine.dispose()
