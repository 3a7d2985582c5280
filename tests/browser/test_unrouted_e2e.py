"""Issue 11 in a real browser against the real server: unrouted texts lead to their chat, can be marked
handled (the nav badge drops, live, on every dashboard) and can start a new chat with their sender; the pair
form refuses a landline. Each test uses its own phone numbers (881-899), since the server is shared."""

from __future__ import annotations

import re
import secrets

from playwright.sync_api import expect

from tests.browser.conftest import OPERATOR, wait_live
from tests.browser.test_dashboard_e2e import assert_not_reloaded, create_chat, mark_no_reload


def badge_value(page) -> int:
    badge = page.locator("#nav-unrouted")
    return int(badge.text_content() or 0)


def test_an_unrouted_text_leads_to_its_chat_and_can_be_marked_handled(dashboard, second_dispatcher, server):
    page, other = dashboard, second_dispatcher
    customer, driver = "+447700900881", "+447700900882"
    chat = create_chat(server, customer, driver, a_label="Customer", b_label="Driver", reference="RIDE-881")
    assert server.api("POST", f"/api/chats/{chat['id']}/end").status_code == 200
    page.goto(server.base + "/unrouted")
    wait_live(page)
    mark_no_reload(page)
    other.goto(server.base + "/chats/" + str(chat["id"]))  # another dispatcher, on another page
    wait_live(other)
    before = badge_value(page)
    late_text = f"Hello? Are you still coming? {secrets.token_hex(3)}"
    server.webhook(customer, chat["proxy_number"], late_text, f"late-{secrets.token_hex(6)}")
    # the text appears, live, with its chat; both badges count it
    row = page.locator("#unrouted-list tr", has_text=late_text)
    expect(row).to_be_visible()
    expect(page.locator("#nav-unrouted")).to_have_text(str(before + 1))
    expect(other.locator("#nav-unrouted")).to_have_text(str(before + 1))
    link = row.locator("a.unrouted-chat")
    expect(link).to_have_text(f"#{chat['id']}")
    expect(row.locator(".chat-link")).to_contain_text("ended")
    expect(row.locator(".chat-link")).to_contain_text("Customer · RIDE-881")
    # mark it handled: the row says who, and the badge drops here and on the other dispatcher's page
    row.locator("button.mark-handled").click()
    expect(row.locator(".handled-note")).to_contain_text(f"Handled by {OPERATOR}")
    expect(row.locator("button.mark-handled")).to_have_count(0)
    expect(page.locator("#nav-unrouted")).to_have_text(str(before))
    expect(other.locator("#nav-unrouted")).to_have_text(str(before))
    assert_not_reloaded(page)
    # "Not handled" no longer lists it; the link opens the ended chat
    page.click("#unrouted-open-tab")
    expect(page.locator("#unrouted-list")).not_to_contain_text(late_text)
    page.click("text=All")
    page.locator("#unrouted-list tr", has_text=late_text).locator("a.unrouted-chat").click()
    expect(page).to_have_url(f"{server.base}/chats/{chat['id']}")
    expect(page.locator("h1")).to_contain_text(f"Chat #{chat['id']}")
    expect(page.locator("h1")).to_contain_text("ended")
    # the Activity page records who handled it (masked number, no text)
    page.goto(server.base + "/activity")
    entry = page.locator("tr, li", has_text="unrouted.handled").first
    expect(entry).to_contain_text(OPERATOR)
    expect(page.locator("body")).not_to_contain_text(late_text)


def test_start_a_chat_from_an_unrouted_text(dashboard, server):
    page = dashboard
    stranger, driver = "+447700900891", "+447700900892"
    text = f"I need a taxi to the station {secrets.token_hex(3)}"
    server.webhook(stranger, "+447700900003", text, f"s-{secrets.token_hex(6)}")
    page.goto(server.base + "/unrouted")
    wait_live(page)
    before = badge_value(page)
    row = page.locator("#unrouted-list tr", has_text=text)
    expect(row.locator(".chat-link")).to_have_text("—")  # a stranger: no chat to link to
    row.locator("a.start-chat").click()
    expect(page).to_have_url(re.compile(r"/unrouted/\d+/pair$"))
    expect(page.locator("#unrouted-source")).to_contain_text(text)
    # the sender is person A, masked; their number is not in the page at all
    expect(page.locator("#pair-a-fixed")).to_have_text("+44 •••• ••08 91")
    assert "900891" not in page.content() and "pair-a\"" not in page.content()
    page.fill("#pair-a_label", "Customer")
    page.fill("#pair-b", "020 7946 0000")  # a landline: refused, named next to the field
    page.click("#pair-form button[type=submit]")
    expect(page.locator("#pair-b-error")).to_contain_text("landline")
    expect(page.locator("#pair-b")).to_have_value("020 7946 0000")
    page.fill("#pair-b", "+44 7700 900892")
    page.fill("#pair-b_label", "Driver")
    page.click("#pair-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/chats/\d+$"))
    expect(page.locator(".flash")).to_contain_text("marked handled")
    chat_id = int(page.url.rsplit("/", 1)[1])
    chat = server.api("GET", f"/api/chats/{chat_id}").json()
    assert (chat["a"], chat["b"], chat["a_label"]) == (stranger, driver, "Customer")
    expect(page.locator("#nav-unrouted")).to_have_text(str(before - 1) if before > 1 else "0")
    page.goto(server.base + "/unrouted")
    expect(page.locator("#unrouted-list tr", has_text=text).locator(".handled-note")).to_contain_text(OPERATOR)


def test_the_pair_form_refuses_a_landline(dashboard, server):
    page = dashboard
    page.fill("#pair-a", "07700 900893")
    page.fill("#pair-b", "020 7946 0000")
    page.fill("#pair-reference", "RIDE-893")
    page.click("#pair-form button[type=submit]")
    error = page.locator("#pair-b-error")
    expect(error).to_contain_text("'020 7946 0000' is a landline number, which cannot receive texts")
    expect(page.locator("#pair-b")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#pair-b")).to_have_value("020 7946 0000")  # what was typed is kept
    expect(page.locator("#pair-form .success")).to_have_count(0)
    chats = server.api("GET", "/api/chats?reference=RIDE-893").json()
    assert chats["total"] == 0
