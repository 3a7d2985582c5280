"""Browser tests: Playwright drives Debian's Chromium against the real server (`python -m webapp`).

Chromium comes from Debian (`apt-get install -y chromium`; the Makefile does it when run as root), not from
`playwright install`. Without it these tests skip with one line, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
EXTRA_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
API_TOKEN = "browser-test-token-0123456789abcdef0123"
OPERATOR, SECOND_OPERATOR, PASSWORD = "dispatcher", "dispatcher2", "browser-test-password"
ADMIN = "chief"  # an admin: sees the Numbers controls and the Operators page
PROXIES = "+447700900001,+447700900002,+447700900003"
FAILING_NUMBER = "+447700900899"  # the simulated carrier reports every text to it as failed


def _chromium_missing() -> str | None:
    if os.path.exists(CHROMIUM) or shutil.which(CHROMIUM):
        return None
    return f"Chromium not found at {CHROMIUM} (apt-get install -y chromium, or set E2E_CHROMIUM)"


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    reason = _chromium_missing()
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.browser)
            if reason and os.environ.get("CI", "").lower() != "true":
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    reason = _chromium_missing()
    if reason:
        pytest.fail(reason + " (CI=true: the browser tests must run)")
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [*browser_type_launch_args.get("args", []), *EXTRA_ARGS],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1280, "height": 800}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    base: str
    log_path: Path

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        return requests.request(method, self.base + path, headers=headers, timeout=10, **kwargs)

    def webhook(self, sender: str, proxy: str, text: str, message_id: str) -> None:
        resp = requests.post(
            self.base + "/webhooks/inbound-sms",
            data={"msisdn": sender.lstrip("+"), "to": proxy.lstrip("+"), "text": text, "messageId": message_id},
            timeout=10,
        )
        assert resp.status_code == 204, resp.text


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[Server]:
    """The real server on a free port: SQLite, simulated SMS (with delivery receipts), outbox worker on."""
    tmp = tmp_path_factory.mktemp("e2e")
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("VONAGE_", "SMS_", "DATABASE_", "FLASK_"))},
        "PYTHONPATH": str(ROOT),
        "PORT": str(port),
        "DATABASE_URL": f"sqlite:///{tmp / 'e2e.db'}",
        "SMS_GATEWAY": "simulated",
        "API_TOKEN": API_TOKEN,
        "PROXY_NUMBERS": PROXIES,
        "SECRET_KEY": "browser-test-secret",
        "OUTBOX_WORKER": "true",
        "LOG_LEVEL": "INFO",
        # test_failures_e2e.py: a phone that is off (err-code 2), and multipart sets relayed as they are soon
        "SIMULATED_FAILING_NUMBERS": f"{FAILING_NUMBER}:2",
        "MULTIPART_TIMEOUT_SECONDS": "4",
    }
    for name in (OPERATOR, SECOND_OPERATOR, ADMIN):
        created = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "webapp", "operators", "create", name, "--password-stdin"]
            + (["--admin"] if name == ADMIN else []),
            input=PASSWORD + "\n", env=env, cwd=tmp, capture_output=True, text=True, timeout=60,
        )
        assert created.returncode == 0, created.stderr + created.stdout
    log_path = tmp / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "webapp"], cwd=tmp, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError("server exited:\n" + log_path.read_text())
            try:
                if requests.get(base + "/healthz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("server did not answer /healthz in 30 s:\n" + log_path.read_text())
            time.sleep(0.1)
        yield Server(base, log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def sign_in(page, base: str, name: str = OPERATOR) -> None:
    page.goto(base + "/")
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")


def watch(page) -> list[str]:
    """Collect CSP violations, script errors and unexpected dialogs (alert() from injected markup).

    Set `page.expect_confirm = True` before an action that should ask for confirmation; it is accepted.
    """
    problems: list[str] = []

    def on_dialog(dialog) -> None:
        if getattr(page, "expect_confirm", False) and dialog.type == "confirm":
            page.expect_confirm = False
            dialog.accept()
        else:
            problems.append(f"unexpected {dialog.type}: {dialog.message}")
            dialog.dismiss()

    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("dialog", on_dialog)
    return problems


@pytest.fixture
def dashboard(page, server):
    """A signed-in page whose live connection is up; fails the test on any CSP violation or JS error."""
    problems = watch(page)
    sign_in(page, server.base)
    wait_live(page)
    yield page
    assert problems == []


@pytest.fixture
def second_dispatcher(browser, server):
    """Another dispatcher: a separate browser context (own cookies), signed in with their own account."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    problems = watch(page)
    sign_in(page, server.base, SECOND_OPERATOR)
    wait_live(page)
    yield page
    context.close()
    assert problems == []


def wait_live(page) -> None:
    page.wait_for_function("() => document.getElementById('live-status').dataset.state === 'live'")


@pytest.fixture
def screenshots_dir() -> Path | None:
    """SCREENSHOTS=1 writes the README's screenshots to docs/screenshots."""
    if os.environ.get("SCREENSHOTS") == "1":
        out = ROOT / "docs" / "screenshots"
        out.mkdir(parents=True, exist_ok=True)
        return out
    return None
