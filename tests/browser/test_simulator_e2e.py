"""The simulator with a phone in two chats (issue 11, item 9): the reply target is explicit and the thread
shows the newest text.

Handset 1 is in a chat with Handset 3 and another with Handset 4, on two proxy numbers. Its "Reply to" names
the chat each number reaches; the choice survives live refreshes; tapping a received text chooses the number it
came from; each reply reaches only the chosen chat. A thread longer than its box is scrolled to its newest text.
"""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.conftest import wait_live
from tests.browser.test_dashboard_e2e import create_chat

H1, H3, H4 = "+447700900111", "+447700900333", "+447700900444"

AT_BOTTOM = """(sel) => { const l = document.querySelector(sel);
  return l.scrollHeight > l.clientHeight + 50 && l.scrollTop + l.clientHeight >= l.scrollHeight - 2; }"""


def test_a_phone_in_two_chats_chooses_where_its_reply_goes(dashboard, server):
    x = create_chat(server, H1, H3, a_label="Customer", b_label="Driver Xavier", reference="sim-x")
    y = create_chat(server, H1, H4, a_label="Customer", b_label="Driver Yolanda", reference="sim-y")
    assert x["proxy_number"] != y["proxy_number"]
    try:
        page = dashboard
        page.goto(server.base + "/simulator/")
        wait_live(page)
        h1, h3, h4 = (page.locator(f"#handset-{n.lstrip('+')}") for n in (H1, H3, H4))
        select = h1.locator("select.reply-to")
        expect(h1.locator("label.reply-to-label")).to_have_text("Reply to")
        # each number names the chat it reaches, and whom
        for chat, whom in ((x, "Driver Xavier, sim-x"), (y, "Driver Yolanda, sim-y")):
            option = select.locator(f"option[data-chat='{chat['id']}']")
            expect(option).to_contain_text(f"chat #{chat['id']} with {whom}")
        expect(select).to_have_value(y["proxy_number"])  # the newest chat by default

        # choose chat X; a live refresh of the thread (a text arriving from Y) keeps the choice
        select.select_option(x["proxy_number"])
        server.webhook(H4, y["proxy_number"], "Yolanda here, parked outside", "e2e-sim-y1")
        expect(h1.locator(".sms.theirs", has_text="Yolanda here")).to_be_visible()
        expect(select).to_have_value(x["proxy_number"])

        h1.locator("input[name=text]").fill("This is for Xavier")
        h1.locator("button[type=submit]").click()
        expect(h3.locator(".sms.theirs", has_text="This is for Xavier")).to_be_visible()
        expect(select).to_have_value(x["proxy_number"])  # still X after sending

        # tapping Yolanda's text makes her chat the target
        h1.locator(".sms.theirs", has_text="Yolanda here").click()
        expect(select).to_have_value(y["proxy_number"])
        h1.locator("input[name=text]").fill("And this is for Yolanda")
        h1.locator("button[type=submit]").click()
        expect(h4.locator(".sms.theirs", has_text="And this is for Yolanda")).to_be_visible()
        expect(h3.locator(".sms", has_text="for Yolanda")).to_have_count(0)
        expect(h4.locator(".sms", has_text="for Xavier")).to_have_count(0)

        # a long thread shows its newest text, live and after a reload
        for n in range(20):
            server.webhook(H3, x["proxy_number"], f"Xavier update {n}", f"e2e-sim-x{n}")
        newest = h1.locator(".sms.theirs", has_text="Xavier update 19")
        expect(newest).to_be_visible()
        thread = f"#thread-{H1.lstrip('+')} .sms-thread"
        page.wait_for_function(AT_BOTTOM, arg=thread)
        expect(newest).to_be_in_viewport()
        page.reload()
        wait_live(page)
        page.wait_for_function(AT_BOTTOM, arg=thread)
        expect(h1.locator(".sms.theirs", has_text="Xavier update 19")).to_be_in_viewport()
    finally:
        for chat in (x, y):
            server.api("POST", f"/api/chats/{chat['id']}/end")
