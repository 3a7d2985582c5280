"""Fixtures for the security tests: real server processes (`python -m webapp`, the documented gunicorn command)
with an operator, and a signed-in HTTP session made through the real sign-in form."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.scale.conftest import Proc, Web, flask_args, free_port, gunicorn_args

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "security-test-token-0123456789abcdef"
PROXY = "+447700900001"
OPERATOR, PASSWORD = "maria", "correct horse battery"
CSRF_RE = re.compile(r'name="csrf-token" content="([^"]+)"')


def server_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "VONAGE_", "SOCKETIO_", "SMS_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        SECRET_KEY="security-test-secret-key",
        DATABASE_URL=f"sqlite:///{tmp_path / 'server.db'}",
        PROXY_NUMBERS=PROXY,
        SMS_GATEWAY="simulated",
        API_TOKEN=TOKEN,
        LOG_LEVEL="INFO",
        AUTO_REPLY="false",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


def flask_cli(env: dict[str, str], cwd: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        flask_args(*args), input=stdin, env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


@dataclass
class Served:
    """A server process, its environment, and how to reach it."""

    web: Web
    env: dict[str, str]
    workdir: Path
    kind: str
    started: list[Proc] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.web.url

    @property
    def pid(self) -> int:
        assert self.web.proc.popen is not None
        return self.web.proc.popen.pid

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return flask_cli(self.env, self.workdir, *args, stdin=stdin)


@pytest.fixture
def serve(tmp_path) -> Iterator[Callable[..., Served]]:
    """Start `python -m webapp` (kind="main") or the documented gunicorn command (kind="gunicorn")."""
    procs: list[Proc] = []

    def start(kind: str = "main", operator: bool = True, **extra: str) -> Served:
        port = free_port()
        env = server_env(tmp_path, PORT=str(port), **extra)
        if operator:
            made = flask_cli(env, tmp_path, "operators", "create", OPERATOR, "--password-stdin", stdin=PASSWORD + "\n")
            assert made.returncode == 0, made.stdout + made.stderr
        args = [sys.executable, "-m", "webapp"] if kind == "main" else gunicorn_args(port)
        proc = Proc(f"{kind}-{port}", args, env, tmp_path).start()
        procs.append(proc)
        return Served(Web(proc, port).wait_ready(), env, tmp_path, kind)

    yield start
    for proc in reversed(procs):
        proc.stop()


def sign_in(base: str, name: str = OPERATOR, password: str = PASSWORD) -> str:
    """The session cookie's value after signing in through the form (sent by hand below: the cookie is
    Secure, which `requests` would keep from a plain-HTTP loopback URL)."""
    page = requests.get(base + "/login", timeout=10)
    token = CSRF_RE.search(page.text).group(1)
    resp = requests.post(
        base + "/login",
        data={"name": name, "password": password, "csrf_token": token},
        headers={"Cookie": f"session={page.cookies['session']}"},
        allow_redirects=False,
        timeout=10,
    )
    assert resp.status_code == 302, resp.text
    return resp.cookies["session"]


def get(base: str, path: str, cookie: str, **kwargs) -> requests.Response:
    headers = {"Cookie": f"session={cookie}"}
    return requests.get(base + path, headers=headers, allow_redirects=False, timeout=10, **kwargs)


def csrf_token(base: str, cookie: str) -> tuple[str, str]:
    """A page's CSRF token, and the session cookie that goes with it (the page may have stored the token)."""
    page = get(base, "/", cookie)
    return CSRF_RE.search(page.text).group(1), page.cookies.get("session", cookie)


def webhook(base: str, text: str = "hello", message_id: str | None = None, **params: str) -> requests.Response:
    data = {"msisdn": "447700900999", "to": PROXY.lstrip("+"), "text": text, **params}
    if message_id:
        data["messageId"] = message_id
    return requests.post(base + "/webhooks/inbound-sms", data=data, timeout=10)
