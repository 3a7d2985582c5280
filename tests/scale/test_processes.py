"""Several processes on one database: the production gunicorn command, separate outbox workers, the doorbell.

Each test starts real processes on free loopback ports and stops them by pid. Waits are bounded and only
wait for behaviour (a row's state, a request arriving); nothing here measures speed.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict

import pytest
import requests
from sqlalchemy import create_engine, text

from tests.conftest import app_config
from webapp import create_app, prepare_database, services
from webapp.extensions import db
from webapp.services.chats import validate_chat_request

from .conftest import API_TOKEN, PROXY, A, B, base_env, flask_args, wait_until

try:
    from tests.fakes.vonage import FakeVonage
except ModuleNotFoundError:  # pragma: no cover
    from fakes.vonage import FakeVonage

pytestmark = pytest.mark.slow


def scalar(url: str, sql: str, **params):
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()
    finally:
        engine.dispose()


def start_chat_over_api(web, a: str = A, b: str = B) -> dict:
    resp = requests.post(
        web.url + "/api/chats",
        json={"a": a, "b": b},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
        timeout=10,
    )
    assert resp.status_code == 201, resp.text
    return resp.json()


def inbound(web, sender: str, proxy: str, text_: str, message_id: str) -> requests.Response:
    form = {
        "msisdn": sender.lstrip("+"),
        "to": proxy.lstrip("+"),
        "text": text_,
        "messageId": message_id,
        "type": "text",
    }
    return requests.post(web.url + "/webhooks/inbound-sms", data=form, timeout=30)


def test_gunicorn_production_command_serves_webhooks_and_relays(database_url, start_web):
    """`gunicorn -w 1 --threads 100 --no-control-socket webapp.wsgi:app`: schema made at start, webhook stored
    and acknowledged, relay sent by the in-process outbox worker."""
    web = start_web("web", base_env(database_url))
    health = requests.get(web.url + "/healthz", timeout=5).json()
    assert health["status"] == "ok"
    chat = start_chat_over_api(web)
    assert inbound(web, A, chat["proxy_number"], "hello from gunicorn", "GUNI-1").status_code == 204
    relay_state = "SELECT status FROM messages WHERE kind = 'relay'"
    assert wait_until(lambda: scalar(database_url, relay_state) == "submitted", what="the relay to be sent")
    assert scalar(database_url, "SELECT count(*) FROM messages WHERE provider_id = 'GUNI-1'") == 1


@pytest.fixture
def fake_vonage(tmp_path):
    log_path = tmp_path / "vonage-accepted.jsonl"
    with FakeVonage(tmp_path / "certs", log_path=log_path) as fake:
        yield fake


def vonage_env(fake) -> dict[str, str]:
    return {
        "SMS_GATEWAY": "vonage",
        "WEBHOOKS_ALLOW_UNSIGNED": "true",
        "VONAGE_API_KEY": "key",
        "VONAGE_API_SECRET": "secret",
        "VONAGE_REST_HOST": fake.host,
        "VONAGE_API_HOST": fake.host,
        "REQUESTS_CA_BUNDLE": str(fake.ca_path),
        "VONAGE_TIMEOUT": "5",
    }


def queue_backlog(tmp_path, database_url, chats: int, per_chat: int) -> int:
    """Pair `chats` couples and queue `per_chat` relays in each, in this process; returns messages queued."""
    app = create_app(app_config(tmp_path, SQLALCHEMY_DATABASE_URI=database_url, PROXY_NUMBERS=PROXY))
    prepare_database(app)
    with app.app_context():
        for c in range(chats):
            services.start_chat(validate_chat_request(f"+4477009001{c:02d}", f"+4477009002{c:02d}"))
        for n in range(per_chat):
            for c in range(chats):
                services.receive_sms(
                    {
                        "msisdn": f"4477009001{c:02d}",
                        "to": PROXY.lstrip("+"),
                        "text": f"c{c} n{n}",
                        "messageId": f"BACKLOG-{c}-{n}",
                    }
                )
        queued = db.session.scalar(text("SELECT count(*) FROM messages WHERE status = 'queued'"))
        db.session.remove()
        db.engine.dispose()
    return queued


def test_separate_outbox_workers_send_each_message_exactly_once(
    tmp_path, database_url, fake_vonage, start_proc
):
    """Three `flask outbox work` processes drain one backlog through the real SDK to the fake Vonage."""
    queued = queue_backlog(tmp_path, database_url, chats=4, per_chat=15)
    env = base_env(database_url, OUTBOX_POLL_SECONDS="0.2", **vonage_env(fake_vonage))
    workers = [start_proc(f"worker{i}", flask_args("outbox", "work"), env) for i in range(3)]
    assert fake_vonage.wait_for(queued, timeout=60), f"{len(fake_vonage.accepted)} of {queued} sent"
    wait_until(
        lambda: scalar(database_url, "SELECT count(*) FROM messages WHERE status = 'submitted'") == queued,
        what="every message to be settled",
    )
    for w in workers:
        assert w.stop() == 0, w.log()
    refs = Counter(a["client-ref"] for a in fake_vonage.accepted)
    assert len(refs) == queued and set(refs.values()) == {1}, "a message was sent twice"
    assert (
        scalar(
            database_url, "SELECT count(*) FROM messages WHERE status <> 'submitted' AND direction = 'out'"
        )
        == 0
    )


def test_separate_outbox_workers_keep_per_recipient_order(tmp_path, database_url, fake_vonage, start_proc):
    """Two workers on one backlog: each recipient still gets its messages in the order they were queued."""
    queued = queue_backlog(tmp_path, database_url, chats=2, per_chat=20)
    env = base_env(database_url, OUTBOX_POLL_SECONDS="0.2", **vonage_env(fake_vonage))
    for i in range(2):
        start_proc(f"worker{i}", flask_args("outbox", "work"), env)
    assert fake_vonage.wait_for(queued, timeout=60)
    by_recipient: dict[str, list[int]] = defaultdict(list)
    for a in fake_vonage.accepted:
        by_recipient[a["to"]].append(int(a["client-ref"].lstrip("m")))
    for recipient, ids in by_recipient.items():
        assert ids == sorted(ids), f"out of order to {recipient[-4:]}"


@pytest.mark.postgres
def test_doorbell_wakes_a_separate_worker_at_once(tmp_path, postgres_schema, fake_vonage, start_proc):
    """PostgreSQL: a worker polling only every 60 s still sends at once, woken by LISTEN/NOTIFY.

    (On SQLite, separate workers poll: there is no doorbell to test.)"""
    database_url = postgres_schema
    queue_backlog(tmp_path, database_url, chats=1, per_chat=0)  # schema + one chat, two intros
    env = base_env(database_url, OUTBOX_POLL_SECONDS="60", **vonage_env(fake_vonage))
    worker = start_proc("worker", flask_args("outbox", "work"), env)
    assert fake_vonage.wait_for(2, timeout=30), worker.log()  # the intros, sent at start
    wait_until(lambda: "outbox worker running" in worker.log(), what="the worker to listen")
    app = create_app(app_config(tmp_path, SQLALCHEMY_DATABASE_URI=database_url, PROXY_NUMBERS=PROXY))
    with app.app_context():
        services.receive_sms(
            {"msisdn": "447700900100", "to": PROXY.lstrip("+"), "text": "ring", "messageId": "RING"}
        )
        db.engine.dispose()
    assert fake_vonage.wait_for(3, timeout=20), "the worker was not woken (it polls only every 60 s)"
    assert worker.stop() == 0


def test_flask_outbox_work_until_idle(tmp_path, database_url, fake_vonage):
    queued = queue_backlog(tmp_path, database_url, chats=1, per_chat=3)
    import subprocess

    env = base_env(database_url, **vonage_env(fake_vonage))
    done = subprocess.run(
        flask_args("outbox", "work", "--until-idle"),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"sent {queued} message(s)" in done.stdout
    assert len(fake_vonage.accepted) == queued
    assert json.loads((tmp_path / "vonage-accepted.jsonl").read_text().splitlines()[0])["to"]
    assert os.path.exists(tmp_path / "vonage-accepted.jsonl")
