"""The receiver shown in docs/events.md works against the real sender: the code block itself is run here."""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
import types
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server

from tests.conftest import API_TOKEN, PROXIES
from webapp import callbacks

from .conftest import SECRET, A, B, events_in_db

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def example_module(monkeypatch) -> types.ModuleType:
    section = DOC.read_text().split("## A receiver, complete", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.setenv("EVENTS_SECRET", SECRET)
    module = types.ModuleType("receiver_example")
    exec(compile(code, str(DOC), "exec"), module.__dict__)
    return module


@pytest.fixture
def example(monkeypatch):
    module = example_module(monkeypatch)
    server = make_server("127.0.0.1", 0, module.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    module.url = f"http://127.0.0.1:{server.server_port}/sms-events"
    yield module
    server.shutdown()


@pytest.fixture
def app_overrides(example):
    return {"EVENTS_URL": example.url, "EVENTS_SECRET": SECRET, "EVENTS_RETRY_BASE_SECONDS": 0.05,
            "EVENTS_RETRY_CAP_SECONDS": 0.1, "AUTO_REPLY": False}


@pytest.mark.sqlite_only
def test_the_documented_receiver_accepts_real_events_and_refuses_forgeries(app, client, example, capsys):
    chat = client.post("/api/chats", json={"a": A, "b": B, "reference": "ride-9"},
                       headers={"Authorization": f"Bearer {API_TOKEN}"}).json
    client.post("/webhooks/inbound-sms", data={"msisdn": B[1:], "to": PROXIES[0][1:], "text": "STOP",
                                                "messageId": "DOC-1"})
    for _ in range(50):
        callbacks.drain_once()
        if all(e.status == "delivered" for e in events_in_db()):
            break
        time.sleep(0.05)
    rows = events_in_db()
    assert rows and all(e.status == "delivered" for e in rows)
    assert example.seen == {e.public_id for e in rows}
    out = capsys.readouterr().out
    assert f"{B} opted out of chat {chat['id']}" in out
    assert f"chat {chat['id']} (ride-9) ended: opt_out" in out

    body = b'{"id":"evt_forged","type":"chat.ended","created_at":"2026-01-01T00:00:00+00:00","data":{}}'
    now = int(time.time())

    def signed(t: int, key: str = SECRET) -> str:
        return f"t={t},v1=" + hmac.new(key.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()

    assert requests.post(example.url, data=body, headers={"X-SMS-Proxy-Signature": signed(now, "wrong")},
                         timeout=5).status_code == 400
    assert requests.post(example.url, data=body, headers={"X-SMS-Proxy-Signature": signed(now - 301)},
                         timeout=5).status_code == 400
    assert requests.post(example.url, data=body, timeout=5).status_code == 400
    assert "evt_forged" not in example.seen
