"""The sign-in throttle is atomic and cannot be turned against real operators.

Repro from the issue: 30 parallel wrong passwords for one name were all checked; 40 parallel failures with
random names then locked a real operator out for 5 minutes; behind a reverse proxy every operator shared one
address. Here the app is served by a real threaded server and the attempts really run in parallel.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from werkzeug.serving import make_server

from webapp.services import operators as accounts
from webapp.throttle import FailureThrottle, Key

PASSWORD = "correct horse battery"
CSRF_RE = re.compile(r'name="csrf-token" content="([^"]+)"')


@pytest.fixture
def served(app) -> Iterator[str]:
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()


@pytest.fixture
def checks(monkeypatch) -> list[str]:
    """Counts password checks (the real check still runs)."""
    seen: list[str] = []
    real = accounts.check_password_hash

    def counted(pwhash: str, password: str) -> bool:
        seen.append(password)
        return real(pwhash, password)

    monkeypatch.setattr(accounts, "check_password_hash", counted)
    return seen


class Browser:
    """One browser: a session cookie with its CSRF token (sent by hand: the cookie is Secure)."""

    def __init__(self, base: str, forwarded_for: str | None = None) -> None:
        self.base = base
        self.headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
        page = requests.get(base + "/login", headers=self.headers, timeout=10)
        self.cookie = page.cookies["session"]
        self.token = CSRF_RE.search(page.text).group(1)

    def sign_in(self, name: str, password: str) -> requests.Response:
        return requests.post(
            self.base + "/login",
            data={"name": name, "password": password, "csrf_token": self.token},
            headers={**self.headers, "Cookie": f"session={self.cookie}"},
            allow_redirects=False,
            timeout=30,
        )


def parallel(n: int, attempt) -> list[requests.Response]:
    barrier = threading.Barrier(n)

    def go(i: int) -> requests.Response:
        barrier.wait()
        return attempt(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(go, range(n)))


def test_30_parallel_wrong_passwords_for_one_name_get_at_most_6_checks(app, served, checks):
    accounts.create_operator("dispatcher", PASSWORD)
    browser = Browser(served)
    answers = parallel(30, lambda i: browser.sign_in("dispatcher", f"guess-{i:04d}"))
    statuses = sorted(r.status_code for r in answers)
    checked = [r for r in answers if r.status_code != 429]
    assert len(checks) <= 6 and len(checked) == len(checks), statuses
    assert all("do not match" in r.text for r in checked)
    assert statuses.count(429) >= 24
    assert all(int(r.headers["Retry-After"]) >= 1 for r in answers if r.status_code == 429)


def test_failures_under_random_names_never_lock_out_a_real_operator(app, served, checks):
    accounts.create_operator("dispatcher", PASSWORD)
    browser = Browser(served)
    answers = parallel(40, lambda i: browser.sign_in(f"nobody-{secrets.token_hex(4)}", "whatever-password"))
    assert {r.status_code for r in answers} == {200}  # each was checked, each failed
    # same address, right after: the real operator gets in
    assert browser.sign_in("dispatcher", PASSWORD).status_code == 302
    # and a second wave does not change that
    parallel(40, lambda i: browser.sign_in(f"nobody-{secrets.token_hex(4)}", "whatever-password"))
    assert Browser(served).sign_in("dispatcher", PASSWORD).status_code == 302


@pytest.mark.parametrize("app_overrides", [{"LOGIN_FREE_ATTEMPTS": 1, "TRUSTED_PROXIES": 1}])
def test_behind_a_trusted_proxy_the_throttle_and_logs_use_the_clients_address(app, served, caplog):
    names = [f"op{i}" for i in range(6)]
    for name in names:
        accounts.create_operator(name, PASSWORD)
    attacker = Browser(served, forwarded_for="203.0.113.7")
    caplog.set_level(logging.INFO, logger="webapp.dashboard.auth")
    for name in names[:5]:  # one failure on each of five real names: five for the address
        assert "do not match" in attacker.sign_in(name, "wrong-password").text
    assert "failed sign-in from 203.0.113.7" in caplog.text
    assert attacker.sign_in(names[5], PASSWORD).status_code == 429  # that address now waits
    colleague = Browser(served, forwarded_for="198.51.100.20")  # another client behind the same proxy
    assert colleague.sign_in(names[5], PASSWORD).status_code == 302


@pytest.mark.parametrize("app_overrides", [{"LOGIN_FREE_ATTEMPTS": 1}])
def test_without_trusted_proxies_forwarded_headers_are_not_believed(app, served):
    names = [f"op{i}" for i in range(6)]
    for name in names:
        accounts.create_operator(name, PASSWORD)
    attacker = Browser(served, forwarded_for="203.0.113.7")
    for name in names[:5]:
        attacker.sign_in(name, "wrong-password")
    # a forged X-Forwarded-For does not make a new address: the connection's address waits
    assert Browser(served, forwarded_for="198.51.100.20").sign_in(names[5], PASSWORD).status_code == 429


# ------------------------------------------------------------------ the throttle itself (pure logic)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_reserves_then_doubles_then_lets_one_attempt_through_at_a_time():
    clock = Clock()
    t = FailureThrottle(base_delay=2, max_delay=60, clock=clock)
    name = [Key("name:x", 3, reserve=True)]
    assert [t.acquire(name) for _ in range(4)] == [0, 0, 0, 1]  # three reserved, the fourth waits
    for _ in range(3):
        t.release(name, failed=True)
    assert t.acquire(name) == 2  # blocked for base_delay after the third failure
    clock.now += 2
    assert t.acquire(name) == 0 and t.acquire(name) == 1  # one at a time now
    t.release(name, failed=True)
    assert t.acquire(name) == 4  # doubled
    clock.now += 4
    assert t.acquire(name) == 0
    t.release(name, failed=False)  # a success forgets the name
    assert [t.acquire(name) for _ in range(3)] == [0, 0, 0]


def test_throttle_counts_failures_only_against_the_keys_named():
    t = FailureThrottle(base_delay=2, clock=Clock())
    keys = [Key("name:x", 1, reserve=True), Key("addr:1", 1)]
    assert t.acquire(keys) == 0
    t.release(keys, failed=True, count=["name:x"])
    assert t.acquire([Key("addr:1", 1)]) == 0  # the address was not charged
    assert t.acquire([Key("name:x", 1, reserve=True)]) == 2


def test_throttle_forgets_quiet_keys_and_a_spray_cannot_evict_a_real_accounts_count():
    clock = Clock()
    t = FailureThrottle(base_delay=2, forget_after=900, max_keys=100, clock=clock)
    real = Key("name:dispatcher", 1)
    t.record_failure(real, precious=True)
    for i in range(500):  # a spray of made-up names
        t.record_failure(Key(f"name:nobody{i}", 1))
    assert t.acquire([real]) == 2  # still counted
    clock.now += 901
    assert t.acquire([real]) == 0  # quiet for the forget window: forgotten
