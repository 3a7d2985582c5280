"""Admins on the dashboard, in Debian's Chromium against the real server (issue 11): the number pool and
operator accounts, what a dispatcher sees (and may not), the pool-exhaustion sentence, the first-run hint on
the sign-in page, the favicon, and a wrong password without console errors.

These tests start their own servers (an admin account, and one with no account at all), so the accounts they
disable and the numbers they add never meet the other browser tests' shared server.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.conftest import API_TOKEN, PASSWORD, PROXIES, ROOT, Server, _free_port, wait_live, watch

ADMIN, DISPATCHER = "boss", "dispatcher"
BLOCKER = "+447700900111"  # the person the pool-exhaustion test puts on every number


@contextmanager
def launch(tmp: Path, accounts: tuple[tuple[str, bool], ...]) -> Iterator[Server]:
    """`python -m webapp` on a free port with its own SQLite database and these (name, is_admin) accounts."""
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("VONAGE_", "SMS_", "DATABASE_", "FLASK_"))},
        "PYTHONPATH": str(ROOT),
        "PORT": str(port),
        "DATABASE_URL": f"sqlite:///{tmp / 'admin.db'}",
        "SMS_GATEWAY": "simulated",
        "API_TOKEN": API_TOKEN,
        "PROXY_NUMBERS": PROXIES,
        "SECRET_KEY": "browser-admin-secret",
        "LOG_LEVEL": "INFO",
    }
    for name, admin in accounts:
        args = [sys.executable, "-m", "flask", "--app", "webapp", "operators", "create", name, "--password-stdin"]
        made = subprocess.run(args + (["--admin"] if admin else []), input=PASSWORD + "\n", env=env, cwd=tmp,
                              capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, made.stderr + made.stdout
    log_path = tmp / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "webapp"], cwd=tmp, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, "server exited:\n" + log_path.read_text()
            try:
                if requests.get(base + "/healthz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "no /healthz in 30 s:\n" + log_path.read_text()
            time.sleep(0.1)
        yield Server(base, log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory) -> Iterator[Server]:
    with launch(tmp_path_factory.mktemp("admin"), ((ADMIN, True), (DISPATCHER, False))) as server:
        yield server


def console_errors(page) -> list[str]:
    """Every console error (a 4xx/5xx resource such as a missing favicon, a script error, a CSP violation).
    Requests cut short by a navigation are not errors and are not counted."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    return errors


def sign_in_as(page, base: str, name: str, password: str = PASSWORD) -> None:
    page.goto(base + "/login")
    page.fill("#name", name)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    wait_live(page)


@pytest.fixture
def admin_page(page, admin_server):
    problems = watch(page)
    sign_in_as(page, admin_server.base, ADMIN)
    yield page
    assert problems == []


def other_browser(browser):
    """A separate browser (own cookies): another person at another desk."""
    return browser.new_context(viewport={"width": 1280, "height": 800})


def row(page, number: str):
    return page.locator(f'#numbers tr[data-number="{number}"]')


def test_an_admin_adds_and_removes_a_number_and_sees_its_load(admin_page, admin_server):
    page = admin_page
    page.click("text=Numbers")
    expect(page.locator("#add-number")).to_be_visible()
    page.fill("#add-number-input", "07700 900009")
    page.click("#add-number button[type=submit]")
    expect(page.locator(".flash")).to_have_text("Added +447700900009 to the pool.")
    expect(row(page, "+447700900009")).to_contain_text("+44 7700 900009")

    # a chat starts through the API: the number it uses shows one more active chat, live
    chat = admin_server.api("POST", "/api/chats", json={"a": "+447700900801", "b": "+447700900802"}).json()
    used = chat["proxy_number"]
    expect(row(page, used).locator("td.right").first).to_have_text("1")
    expect(row(page, used).locator("meter")).to_have_attribute("value", "1")

    # in use: removing it is refused, with the reason, and it stays
    page.expect_confirm = True
    row(page, used).locator("button[data-remove]").click()
    expect(page.locator("#remove-number-error")).to_have_text(
        f"{used} is in use by 1 active chat: it can be removed once it has ended")
    expect(row(page, used)).to_be_visible()

    # once the chat has ended it goes
    assert admin_server.api("POST", f"/api/chats/{chat['id']}/end").status_code == 200
    page.goto(admin_server.base + "/numbers")
    expect(row(page, used).locator("td.right").first).to_have_text("0")
    page.expect_confirm = True
    row(page, used).locator("button[data-remove]").click()
    expect(page.locator(".flash")).to_have_text(f"Removed {used} from the pool.")
    expect(row(page, used)).to_have_count(0)
    if used != "+447700900009":  # leave the pool as it was
        page.expect_confirm = True
        row(page, "+447700900009").locator("button[data-remove]").click()
        expect(row(page, "+447700900009")).to_have_count(0)
    else:
        page.fill("#add-number-input", used)
        page.click("#add-number button[type=submit]")
        expect(row(page, used)).to_be_visible()


def test_an_admin_creates_an_operator_disables_them_and_resets_their_password(admin_page, admin_server, browser):
    page, base = admin_page, admin_server.base
    page.click("#nav-operators")
    expect(page).to_have_url(base + "/admin/operators")
    page.fill("#new-name", "tom")
    page.fill("#new-password", "tom-first-pw")
    page.fill("#new-password2", "tom-first-pw")
    page.click("#create-operator button[type=submit]")
    expect(page.locator(".flash")).to_contain_text("Created dispatcher tom.")
    tom_row = page.locator('#operators tr[data-name="tom"]')
    expect(tom_row.locator(".role")).to_have_text("dispatcher")

    # tom signs in at his own desk
    desk = other_browser(browser)
    tom = desk.new_page()
    tom_problems = watch(tom)
    sign_in_as(tom, base, "tom", "tom-first-pw")
    expect(tom.locator("#nav-operators")).to_have_count(0)  # a dispatcher

    # the admin disables him: his open dashboard ends, without him doing anything
    page.expect_confirm = True
    tom_row.locator('button[data-action="disable"]').click()
    expect(page.locator(".flash")).to_contain_text("Disabled tom")
    expect(tom_row.locator(".status")).to_have_text("disabled")
    expect(tom).to_have_url(re.compile(r"/login"), timeout=15_000)
    tom.fill("#name", "tom")
    tom.fill("#password", "tom-first-pw")
    tom.click("button[type=submit]")
    expect(tom.locator(".error")).to_contain_text("This account is disabled")

    # enabled again, with a new password set by the admin: the old one no longer works
    tom_row.locator('button[data-action="enable"]').click()
    expect(tom_row.locator(".status")).to_have_text("enabled")
    tom_row.locator(".reset-password summary").click()
    tom_row.locator('input[name="password"]').fill("tom-second-pw")
    tom_row.locator('input[name="password2"]').fill("tom-second-pw")
    tom_row.locator('button[data-action="password"]').click()
    expect(page.locator(".flash")).to_contain_text("Changed the password of tom")
    tom.fill("#name", "tom")
    tom.fill("#password", "tom-first-pw")
    tom.click("button[type=submit]")
    expect(tom.locator(".error")).to_contain_text("do not match")
    sign_in_as(tom, base, "tom", "tom-second-pw")

    # promoted, he sees the admin link
    tom_row.locator('button[data-action="promote"]').click()
    expect(tom_row.locator(".role")).to_have_text("admin")
    tom.reload()
    expect(tom.locator("#nav-operators")).to_be_visible()
    tom_row.locator('button[data-action="demote"]').click()
    expect(tom_row.locator(".role")).to_have_text("dispatcher")
    desk.close()
    assert tom_problems == []


def test_the_last_admin_cannot_demote_themself(admin_page, admin_server):
    page = admin_page
    page.goto(admin_server.base + "/admin/operators")
    me = page.locator(f'#operators tr[data-name="{ADMIN}"]')
    expect(me.locator(".name")).to_contain_text("you")
    me.locator('button[data-action="demote"]').click()
    expect(page.locator("#operators-error")).to_contain_text(f"{ADMIN} is the only enabled admin")
    expect(me.locator(".role")).to_have_text("admin")


def test_a_dispatcher_sees_no_admin_controls_and_gets_403(page, admin_server):
    problems = watch(page)
    base = admin_server.base
    sign_in_as(page, base, DISPATCHER)
    expect(page.locator("#nav-operators")).to_have_count(0)
    page.click("text=Numbers")
    expect(page.locator("#numbers")).to_be_visible()
    expect(page.locator("#add-number")).to_have_count(0)
    expect(page.locator("button[data-remove]")).to_have_count(0)
    expect(page.locator(".lead")).to_contain_text("Only an admin can add or remove numbers")
    resp = page.goto(base + "/admin/operators")
    assert resp.status == 403
    expect(page.locator("h1")).to_have_text("Admins only")
    expect(page.locator(".error")).to_contain_text("You are signed in as dispatcher, without admin rights")
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    for url, form in (("/admin/numbers", {"number": "+447700900010"}), ("/admin/operators/disable", {"name": ADMIN})):
        posted = page.request.post(base + url, form={**form, "csrf_token": token})
        assert posted.status == 403, url
    # the 403 page's own console error is expected; nothing else went wrong
    assert problems == []


def test_pool_exhaustion_names_the_blocking_person_in_plain_words(page, admin_server, browser):
    base = admin_server.base
    chats = []
    for i in range(20):  # the customer joins chats until every pool number carries one of theirs
        resp = admin_server.api("POST", "/api/chats", json={"a": BLOCKER, "b": f"+4477009009{i:02d}"})
        if resp.status_code == 409:
            break
        chats.append(resp.json()["id"])
    assert resp.status_code == 409 and resp.json()["field"] == "proxy_number"
    expected = ("Customer (+44 •••• ••01 11) is already in a chat on every proxy number. "
                "End one of their active chats, or ask an admin to add a number to the pool.")
    problems = watch(page)
    sign_in_as(page, base, DISPATCHER)
    page.fill("#pair-a", "07700 900111")
    page.fill("#pair-a_label", "Customer")
    page.fill("#pair-b", "07700 900999")
    page.click("#pair-form button[type=submit]")
    error = page.locator("#pair-error")
    expect(error).to_have_text(expected)
    assert "`" not in error.text_content() and "flask" not in error.text_content()
    assert problems == []

    # an admin gets a link to the numbers page instead of "ask an admin"
    desk = other_browser(browser)
    boss = desk.new_page()
    sign_in_as(boss, base, ADMIN)
    boss.fill("#pair-a", "07700 900111")
    boss.fill("#pair-a_label", "Customer")
    boss.fill("#pair-b", "07700 900999")
    boss.click("#pair-form button[type=submit]")
    expect(boss.locator("#pair-error")).to_contain_text("Customer (+44 •••• ••01 11) is already in a chat")
    boss.locator("#pair-error a").click()
    expect(boss).to_have_url(base + "/numbers#add-number")
    expect(boss.locator("#add-number-input")).to_be_visible()
    desk.close()
    for chat_id in chats:
        admin_server.api("POST", f"/api/chats/{chat_id}/end")


def test_favicon_and_a_wrong_password_log_no_console_error(page, admin_server):
    base = admin_server.base
    icons = []
    page.on("response", lambda r: icons.append((r.url, r.status)) if "favicon" in r.url else None)
    errors = console_errors(page)
    page.goto(base + "/login")
    page.fill("#name", ADMIN)
    page.fill("#password", "not the password")
    with page.expect_response(base + "/login") as answer:
        page.click("button[type=submit]")
    assert answer.value.status == 200  # the form again with the error: not a 401 document
    expect(page.locator(".error")).to_have_text("That name and password do not match.")
    sign_in_as(page, base, ADMIN)
    for path in ("/numbers", "/admin/operators", "/activity"):
        page.goto(base + path)
    # the icon the pages link, and the one browsers ask for on their own
    icon = page.locator('link[rel="icon"]').get_attribute("href")
    assert page.request.get(base + icon).status == 200
    ico = page.request.get(base + "/favicon.ico")
    assert ico.status == 200 and ico.headers["content-type"] in ("image/vnd.microsoft.icon", "image/x-icon")
    assert icons and all(status == 200 for _url, status in icons), icons  # Chromium fetched the icon itself
    assert errors == []
    # a dashboard fragment asked for without a session (htmx, after a sign-out): a 401 that says how to
    # authenticate (RFC 9110), and where
    anonymous = requests.get(base + "/fragments/nav", headers={"HX-Request": "true"}, timeout=10)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Cookie realm=")


def test_the_sign_in_page_says_how_to_create_the_first_admin(page, tmp_path):
    with launch(tmp_path, ()) as empty:
        errors = console_errors(page)
        page.goto(empty.base + "/")
        expect(page).to_have_url(re.compile(r"/login"))
        hint = page.locator("#first-run")
        expect(hint).to_contain_text("No operator account exists yet")
        expect(hint.locator("code").first).to_have_text(".venv/bin/flask operators create NAME --admin")
        expect(hint).to_contain_text("at least 8 characters")
        assert errors == []
