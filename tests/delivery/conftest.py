"""Fixtures for the delivery tests: the app sends through the real SDK (HTTPS) to a local fake Vonage.

- `fake`: a FakeVonage on 127.0.0.1 with its own CA; REQUESTS_CA_BUNDLE points at it (requests' trust_env).
- `app` (root fixture) is configured by `app_overrides` here: SMS_GATEWAY=vonage, VONAGE_REST_HOST=the fake.
- `served`: the same app served over HTTP in a thread, so the fake can post delivery receipts to it.
- `chat`: one active chat A <-> B through the first proxy number, with its introductions already sent.
- `server`: the real server (`python -m webapp`) as a subprocess, for crash tests.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from tests.conftest import PROXIES
from tests.fakes.vonage import FakeVonage
from webapp import outbox
from webapp.models import Chat
from webapp.services.chats import start_chat, validate_chat_request

ROOT = Path(__file__).resolve().parents[2]
A, B = "+447700900100", "+447700900200"


def wire(number: str) -> str:
    """A number as Vonage writes it in webhooks (no plus)."""
    return number.lstrip("+")


@pytest.fixture
def fake(tmp_path, monkeypatch) -> Iterator[FakeVonage]:
    with FakeVonage(tmp_path / "certs") as f:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(f.ca_path))
        yield f


@pytest.fixture
def delivery_overrides() -> dict[str, Any]:
    """Override in a test module to add settings on top of the vonage configuration below."""
    return {}


@pytest.fixture
def app_overrides(fake, delivery_overrides) -> dict[str, Any]:
    cfg = {
        "SMS_GATEWAY": "vonage",
        "WEBHOOKS_ALLOW_UNSIGNED": True,  # these tests post unsigned webhooks on purpose
        "VONAGE_API_KEY": "key",
        "VONAGE_API_SECRET": "secret",
        "VONAGE_REST_HOST": fake.host,
        "VONAGE_TIMEOUT": 5,
        "VONAGE_MAX_SENDS_PER_SECOND": 1000.0,
        "OUTBOX_RETRY_BASE_SECONDS": 0.1,  # a retry is never due within the drain that failed it
        "OUTBOX_RETRY_CAP_SECONDS": 0.3,
        "OUTBOX_CONCURRENCY": 1,
        "AUTO_REPLY": False,
    }
    cfg.update(delivery_overrides)
    return cfg


@pytest.fixture
def served(app) -> Iterator[str]:
    """Base URL of the app served over plain HTTP in a background thread."""
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()


def drain_all(rounds: int = 400, pause: float = 0.05) -> int:
    """Run the housekeeping jobs and drain, until nothing is queued, sending or waiting; returns the sends tried."""
    from flask import current_app
    from sqlalchemy import and_, func, or_, select

    from webapp.extensions import db
    from webapp.jobs import run_once
    from webapp.models import Message

    total = 0
    for _ in range(rounds):
        assert all(run_once(current_app._get_current_object()).values()), "a housekeeping job failed"
        total += outbox.drain_once()
        pending = db.session.scalar(
            select(func.count())
            .select_from(Message)
            .where(
                Message.direction == "out",
                or_(
                    Message.status.in_(("queued", "sending")),
                    and_(Message.status == "unconfirmed", Message.next_attempt_at.is_not(None)),
                ),
            )
        )
        db.session.rollback()
        if not pending:
            return total
        time.sleep(pause)
    raise AssertionError("the outbox did not settle")


@pytest.fixture
def chat(app, fake) -> Chat:
    made = start_chat(validate_chat_request(A, B, "Customer", "Driver"))
    outbox.drain_once()
    fake.clear()
    return made


@pytest.fixture
def post_inbound(client) -> Callable[..., Any]:
    counter = iter(range(10**9))

    def _post(text: str, sender: str = A, to: str = PROXIES[0], **extra: str):
        params = {"msisdn": wire(sender), "to": wire(to), "text": text, "type": "text",
                  "messageId": f"IN{next(counter):012d}", "message-timestamp": "2026-11-27 12:00:00"}
        params.update(extra)
        return client.post("/webhooks/inbound-sms", data=params)

    return _post


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m webapp` as a subprocess on a fixed port, so it can be killed and started again."""

    def __init__(self, env: dict[str, str], port: int, log_path: Path) -> None:
        self.env, self.port, self.log_path = env, port, log_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        log = open(self.log_path, "a")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "webapp"], env=self.env, cwd=self.log_path.parent, stdout=log, stderr=log
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("server did not start")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def server_factory(tmp_path, fake) -> Iterator[Callable[..., Server]]:
    made: list[Server] = []

    def _make(**settings: Any) -> Server:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VONAGE_", "OUTBOX_", "FLASK_"))}
        env.update({
            "PYTHONPATH": str(ROOT),
            "REQUESTS_CA_BUNDLE": str(fake.ca_path),
            "SECRET_KEY": "crash-test",
            "PORT": str(port),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'server.db'}",
            "SMS_GATEWAY": "vonage",
            "WEBHOOKS_ALLOW_UNSIGNED": "true",
            "VONAGE_API_KEY": "key",
            "VONAGE_API_SECRET": "secret",
            "VONAGE_REST_HOST": fake.host,
            "VONAGE_TIMEOUT": "5",
            "PROXY_NUMBERS": ",".join(PROXIES),
            "API_TOKEN": "crash-token-0123456789abcdef0123456789",
            "AUTO_REPLY": "false",
            "LOG_LEVEL": "WARNING",
        })
        env.update({k: str(v) for k, v in settings.items()})
        server = Server(env, port, tmp_path / "server.log")
        made.append(server)
        return server

    yield _make
    for server in made:
        server.stop()
