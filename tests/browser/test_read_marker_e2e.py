"""Opening a chat with unread texts clears its marker, every time (issue 11, item 1).

The marker is cleared by a POST fired when the transcript loads (`hx-trigger="load"`). It used to fail with
400 "The CSRF token is missing" in most openings: htmx 4 initialises in a `setTimeout` of its own, which
often ran before app.js (the next deferred script) had registered the listener that adds the CSRF header,
so the page's first requests went out without it. The header now comes from the markup (`hx-headers:inherited`
on <body>), which htmx reads whenever a request is made.
"""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.conftest import wait_live
from tests.browser.test_dashboard_e2e import create_chat

OPENINGS = 10


def test_opening_a_chat_always_clears_its_unread_marker(dashboard, server):
    page = dashboard
    chat = create_chat(server, "+447700900611", "+447700900612", a_label="Customer", b_label="Driver")
    read_url = f"{server.base}/chats/{chat['id']}/read"
    answers: list[int] = []
    page.on("response", lambda r: answers.append(r.status) if r.url == read_url else None)
    row = page.locator(f"#chat-row-{chat['id']}")
    for n in range(OPENINGS):
        # leave the chat first: an open chat page marks a new text read by itself when it refreshes live, and
        # then the next opening has nothing to mark
        page.goto("about:blank")
        server.webhook("+447700900611", chat["proxy_number"], f"Are you there? ({n})", f"e2e-read-{n}")
        if n in (0, OPENINGS - 1):  # the list shows it as unread (every page load opens a live connection:
            page.goto(server.base + "/")  # the list is looked at twice, not ten times)
            wait_live(page)
            expect(row.locator(".unread-badge")).to_be_visible()
        # opening the chat marks it read (a fresh page load each time: the race was at start-up)
        with page.expect_response(lambda r: r.url == read_url) as answer:
            page.goto(f"{server.base}/chats/{chat['id']}")
        assert answer.value.status == 204, f"opening {n + 1}: {answer.value.status} {answer.value.text()}"
        wait_live(page)
        # the marker is cleared: the list, as the server renders it now, flags nothing
        assert "unread-badge" not in server_list(page, server, chat["id"]), f"opening {n + 1}: still unread"
    page.goto(server.base + "/")
    expect(row).to_be_visible()
    expect(row.locator(".unread-badge")).to_have_count(0)
    assert answers and all(status == 204 for status in answers), answers


def server_list(page, server, chat_id: int) -> str:
    """The chats list fragment, fetched with the page's own session (what the list would show now)."""
    html = page.evaluate("(url) => fetch(url, {headers: {'HX-Request': 'true'}}).then(r => r.text())",
                         server.base + "/fragments/chats")
    start = html.find(f'id="chat-row-{chat_id}"')
    assert start != -1, "the chat is not in the list"
    return html[start : html.find("</tr>", start)]
