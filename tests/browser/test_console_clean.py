"""Every page of the dashboard, walked as a dispatcher (and as an admin) clicks through it, logs no console error.

A console error is what a dispatcher's browser reports when something is broken under the surface: a 404 for
`/favicon.ico`, a 401/400 answer to a script's request, a script error, a CSP violation. The walk starts at the
chats page and follows every link of the site it finds (breadth first), so a page added later is walked too.
"""

from __future__ import annotations

from urllib.parse import urldefrag, urljoin, urlparse

import pytest

from tests.browser.conftest import ADMIN, OPERATOR, sign_in, wait_live

MAX_PAGES = 60
SKIP_PREFIXES = ("/logout", "/api/", "/static/", "/socket.io/", "/webhooks/")


def console_problems(page) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"{page.url}: console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(f"{page.url}: page error: {exc}"))
    page.on(
        "response",
        lambda r: problems.append(f"{page.url}: {r.status} for {r.url}") if r.status >= 400 else None,
    )
    return problems


def links_on(page, base: str) -> list[str]:
    hrefs = page.eval_on_selector_all(
        "a[href]:not([download])", "els => els.map(e => e.getAttribute('href'))"
    )
    out = []
    for href in hrefs:
        url = urldefrag(urljoin(page.url, href)).url
        parsed = urlparse(url)
        if url.startswith(base) and not parsed.path.startswith(SKIP_PREFIXES) and not parsed.path.endswith(".csv"):
            out.append(url)
    return out


def walk(page, base: str) -> list[str]:
    seen: set[str] = set()
    queue = [base + "/"]
    visited = []
    while queue and len(visited) < MAX_PAGES:
        url = queue.pop(0)
        if url in seen:
            continue
        seen.add(url)
        page.goto(url)
        if page.locator("#live-status").count():
            wait_live(page)
        page.wait_for_timeout(300)  # late requests (htmx loads, the favicon) have time to fail
        visited.append(urlparse(url).path + (f"?{urlparse(url).query}" if urlparse(url).query else ""))
        queue += [u for u in links_on(page, base) if u not in seen]
    return visited


@pytest.fixture
def some_history(server):
    """A chat with a relayed text, an ended chat and an unrouted text, so their pages and links exist."""
    live = server.api("POST", "/api/chats", json={
        "a": "+447700900611", "b": "+447700900612", "a_label": "Customer", "b_label": "Driver",
    })
    assert live.status_code == 201, live.text
    chat = live.json()
    server.webhook("+447700900611", chat["proxy_number"], "On my way to the lobby", f"console-{chat['id']}")
    ended = server.api("POST", "/api/chats", json={"a": "+447700900613", "b": "+447700900614"})
    assert ended.status_code == 201, ended.text
    assert server.api("POST", f"/api/chats/{ended.json()['id']}/end").status_code == 200
    server.webhook("+447700900699", chat["proxy_number"], "who is this?", f"console-stranger-{chat['id']}")
    yield chat
    server.api("POST", f"/api/chats/{chat['id']}/end")


def test_sign_in_page_logs_no_console_error(browser, server):
    context = browser.new_context()
    page = context.new_page()
    problems = console_problems(page)
    page.goto(server.base + "/login")
    page.wait_for_timeout(500)
    context.close()
    assert problems == []


@pytest.mark.parametrize("who", [OPERATOR, ADMIN])
def test_every_page_an_operator_reaches_logs_no_console_error(browser, server, some_history, who):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    problems = console_problems(page)
    sign_in(page, server.base, who)
    visited = walk(page, server.base)
    context.close()
    assert any(path.startswith("/chats/") for path in visited), visited  # a chat page was among them
    assert any(path.startswith("/unrouted") for path in visited), visited
    if who == ADMIN:
        assert "/admin/operators" in visited, visited
    assert len(visited) >= 5, visited
    assert problems == [], problems
