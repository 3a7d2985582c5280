"""Opening a chat with unread texts clears its marker, every time (issue 11, item 1).

The marker is cleared by a POST fired when the transcript loads (`hx-trigger="load"`). It used to fail with
400 "The CSRF token is missing" in most openings: htmx 4 initialises in a `setTimeout` of its own, which
often ran before app.js (the next deferred script) had registered the listener that adds the CSRF header,
so the page's first requests went out without it. The header now comes from the markup (`hx-headers:inherited`
on <body>), which htmx reads whenever a request is made.
"""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.test_dashboard_e2e import create_chat

OPENINGS = 10


def test_opening_a_chat_always_clears_its_unread_marker(dashboard, server):
    page = dashboard
    chat = create_chat(server, "+447700900611", "+447700900612", a_label="Customer", b_label="Driver")
    read_url = f"{server.base}/chats/{chat['id']}/read"
    answers: list[int] = []
    page.on("response", lambda r: answers.append(r.status) if r.url == read_url else None)
    for n in range(OPENINGS):
        server.webhook("+447700900611", chat["proxy_number"], f"Are you there? ({n})", f"e2e-read-{n}")
        # the list shows it as unread ...
        page.goto(server.base + "/")
        expect(page.locator(f"#chat-row-{chat['id']} .unread-badge")).to_be_visible()
        # ... opening the chat marks it read (fresh page load each time: the race was at start-up)
        with page.expect_response(lambda r: r.url == read_url) as answer:
            page.goto(f"{server.base}/chats/{chat['id']}")
        assert answer.value.status == 204, f"opening {n + 1}: {answer.value.status} {answer.value.text()}"
        page.goto(server.base + "/")
        expect(page.locator(f"#chat-row-{chat['id']}")).to_be_visible()
        expect(page.locator(f"#chat-row-{chat['id']} .unread-badge")).to_have_count(0)
    assert answers and all(status == 204 for status in answers), answers
    assert server.api("GET", f"/api/chats/{chat['id']}").ok
