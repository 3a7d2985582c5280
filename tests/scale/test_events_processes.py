"""Event callbacks across processes on PostgreSQL: the sender in a separate `flask outbox work` is woken at once
by the `smsproxy_events` NOTIFY of the transaction that recorded the event (it polls only every 60 s)."""

from __future__ import annotations

import time

import pytest

from tests.conftest import app_config
from tests.fakes.receiver import Receiver
from webapp import create_app, prepare_database, services
from webapp.extensions import db
from webapp.services.chats import validate_chat_request

from .conftest import PROXY, A, B, base_env, flask_args, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
SECRET = "events-across-processes"


def test_a_separate_event_sender_is_woken_by_the_doorbell(tmp_path, postgres_schema, start_proc):
    with Receiver(secret=SECRET) as rx:
        events = {"EVENTS_URL": rx.url, "EVENTS_SECRET": SECRET}
        app = create_app(app_config(tmp_path, SQLALCHEMY_DATABASE_URI=postgres_schema, PROXY_NUMBERS=PROXY,
                                    **events))
        prepare_database(app)
        env = base_env(postgres_schema, EVENTS_POLL_SECONDS="60", OUTBOX_POLL_SECONDS="60", **events)
        worker = start_proc("worker", flask_args("outbox", "work"), env)
        wait_until(lambda: "outbox worker running" in worker.log(), what="the worker to listen")
        time.sleep(1.0)  # its LISTEN is in place (the doorbell thread starts with the worker)
        with app.app_context():
            chat = services.start_chat(validate_chat_request(A, B))
            db.session.remove()
            db.engine.dispose()
        # within 20 s, although the sender polls only every 60 s: the NOTIFY woke it
        assert rx.wait_for(lambda hits: any(h.event.get("type") == "chat.created" for h in hits), timeout=20), \
            worker.log()
        [hit] = [h for h in rx.hits if h.event["type"] == "chat.created"]
        assert hit.signature_ok and hit.event["data"]["chat_id"] == chat.id
        assert worker.stop() == 0
