"""`python -m webapp` as a newcomer runs it: a real server process on its embedded defaults."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
A, B = "+447700900111", "+447700900222"
TOKEN = "server-test-token-0123456789abcdef0123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp_path: Path, **env: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("VONAGE_", "SMS_", "DATABASE_"))},
        "PORT": str(port),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'server.db'}",
        "SECRET_KEY": "server-test",
        **env,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "webapp"], cwd=tmp_path, env={**full_env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        stdin=subprocess.DEVNULL,  # as under a service manager: not a terminal
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stdout.read()}")
        try:
            if requests.get(base + "/healthz", timeout=1).ok:
                return proc, base
        except requests.ConnectionError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not answer /healthz in 20 s")


def stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out


def test_python_m_webapp_serves_the_whole_flow(tmp_path):
    proc, base = start_server(
        tmp_path, API_TOKEN=TOKEN, PROXY_NUMBERS="+447700900001", LOG_LEVEL="INFO"
    )
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        health = requests.get(base + "/healthz").json()
        assert health["status"] == "ok" and health["gateway"] == "simulated"
        assert {"recover-interrupted-sends", "reconcile-unconfirmed-sends"} <= set(health["jobs"])
        assert not any(job["failing"] for job in health["jobs"].values())
        chat = requests.post(base + "/api/chats", json={"a": A, "b": B}, headers=auth).json()
        resp = requests.post(
            base + "/webhooks/inbound-sms",
            data={"msisdn": A[1:], "to": "447700900001", "text": "secret body text", "messageId": "srv-1"},
        )
        assert resp.status_code == 204
        # the in-process outbox worker sends without anyone calling drain
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            messages = requests.get(f"{base}/api/chats/{chat['id']}", headers=auth).json()["messages"]
            if messages and all(m["status"] == "submitted" for m in messages if m["direction"] == "outbound"):
                break
            time.sleep(0.05)
        relays = [m for m in messages if m["kind"] == "relay"]
        assert [(m["text"], m["status"]) for m in relays] == [("secret body text", "submitted")]
    finally:
        log = stop(proc)
    # logs carry masked numbers, never full numbers or message bodies
    assert "secret body text" not in log
    assert A not in log and A[1:] not in log
    assert "+44••••••0111" in log
    # the default start is gunicorn: no development-server warning of any kind
    assert "Starting gunicorn" in log
    assert "production deployment" not in log and "development server" not in log.lower()


def test_debug_start_says_development_server_without_the_misleading_production_warning(tmp_path):
    proc, _base = start_server(tmp_path, DEBUG="true", LOG_LEVEL="INFO", OUTBOX_WORKER="false")
    log = stop(proc)
    assert "DEBUG=true: Werkzeug's development server and relaxed cookies, for development only" in log
    # Flask-SocketIO's "Werkzeug appears to be used in a production deployment" (stdin not a terminal)
    assert "production deployment" not in log


def test_missing_vonage_credentials_fail_at_start_with_a_clear_message(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VONAGE_")}
    proc = subprocess.run(
        [sys.executable, "-m", "webapp"], cwd=tmp_path, capture_output=True, text=True, timeout=30,
        env={**env, "SMS_GATEWAY": "vonage", "PYTHONPATH": str(ROOT), "PORT": str(free_port())},
    )
    assert proc.returncode == 2
    assert "SMS_GATEWAY=vonage needs VONAGE_API_KEY and VONAGE_API_SECRET" in proc.stderr
    assert "Traceback" not in proc.stderr
