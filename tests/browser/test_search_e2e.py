"""Search in the browser (issue 11, item 7): one box finds chats in both tabs, by reference, text or number,
and each result says which tab holds it. The number typed never reaches the server's log."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.test_dashboard_e2e import create_chat


def test_search_finds_chats_in_both_tabs_by_reference_text_and_number(dashboard, server):
    page = dashboard
    ended = create_chat(server, "+447700900711", "+447700900712", a_label="Customer", reference="ride-7042")
    active = create_chat(server, "+447700900713", "+447700900714", b_label="Driver Zebulon", reference="ride-7043")
    server.webhook("+447700900713", active["proxy_number"], "Hello? Are you still coming?", "e2e-search-1")
    assert server.api("POST", f"/api/chats/{ended['id']}/end").ok

    page.goto(server.base + "/")
    box = page.locator("input[name=q]")
    rows = page.locator(".chat-row")

    # a reference of an ended chat, typed on the Active tab: found, and the row says where it is
    box.fill("ride-7042")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("ride-7042")
    expect(rows.first.locator(".in-tab")).to_have_text("— Ended")
    expect(page.locator(".list-summary")).to_contain_text("0 active · 1 ended")

    # both tabs at once, active first
    box.fill("ride-704")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator(".in-tab")).to_have_text("— Active")
    expect(rows.nth(1).locator(".in-tab")).to_have_text("— Ended")

    # what someone wrote, with the matching text shown
    box.fill("still coming")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".snippet.hit")).to_contain_text("Are you still coming?")
    expect(rows.first).to_contain_text("ride-7043")

    # a number: national format, and its last digits
    box.fill("07700 900711")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("ride-7042")
    box.fill("0714")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("ride-7043")

    box.fill("zebulon")
    expect(rows).to_have_count(1)
    box.fill("nobody-by-this-name")
    expect(page.locator(".empty")).to_contain_text("No chat, active or ended, matches")

    log = server.log_path.read_text()
    assert "900711" not in log and "7700900714" not in log, "a searched number reached the log"
