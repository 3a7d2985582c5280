"""A dispatcher clicking quickly from page to page keeps a live connection (found while testing search: a page left
while its live connection was still starting held one of the operator's SOCKETIO_MAX_PER_OPERATOR slots until
the server's ping timeout, so after ten quick clicks the next page was refused and never showed "Live").

The browser test server keeps the default cap of 10 per operator; the dispatcher opens 25 pages in a row, leaving
each before its connection is up, and the last one must go live within a few seconds.
"""

from __future__ import annotations

from tests.browser.conftest import wait_live


def test_quick_clicks_through_pages_never_use_up_the_live_connections(dashboard, server):
    page = dashboard
    chat = server.api("POST", "/api/chats", json={"a": "+447700900631", "b": "+447700900632"}).json()
    try:
        for i in range(25):
            page.goto(server.base + (f"/chats/{chat['id']}" if i % 2 else "/"))
            page.wait_for_timeout(0)  # its live connection is being opened (or not yet): leave now
        page.goto(server.base + "/")
        page.wait_for_function(
            "() => document.getElementById('live-status').dataset.state === 'live'", timeout=8000
        )
        wait_live(page)
    finally:
        server.api("POST", f"/api/chats/{chat['id']}/end")
