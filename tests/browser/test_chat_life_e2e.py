"""A chat's whole life in a real browser against the real server: the compose box with its live SMS part
count, the opt-out error on the pair form, time left, the Export button, the Activity and Opt-outs pages.
Each test uses its own phone numbers, since the server (and its database) is shared."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from playwright.sync_api import expect

from tests.browser.conftest import OPERATOR, PROXIES, wait_live
from tests.browser.test_dashboard_e2e import assert_not_reloaded, create_chat, mark_no_reload, wait_settled


def open_chat(page, server, chat: dict) -> None:
    page.goto(f"{server.base}/chats/{chat['id']}")
    wait_live(page)


def test_the_compose_box_counts_parts_as_you_type_and_sends(dashboard, server):
    page = dashboard
    chat = create_chat(server, "+447700900701", "+447700900702", a_label="Customer", b_label="Driver")
    open_chat(page, server, chat)
    mark_no_reload(page)
    box, count = page.locator("#compose-text"), page.locator("#compose-count")
    expect(count).to_have_text("0 characters · 1 SMS")
    box.fill("x" * 160)
    expect(count).to_have_text("160 characters · 1 SMS")
    box.press("End")
    box.type("y")
    expect(count).to_have_text("161 characters · 2 SMS parts")
    box.fill("€" * 81)  # a GSM extension character counts twice
    expect(count).to_have_text("81 characters · 2 SMS parts")
    box.fill("Zażółć")  # outside the GSM alphabet: unicode, 70 to an SMS
    expect(count).to_have_text("6 characters (unicode) · 1 SMS")
    page.check("#compose-to-both")
    expect(count).to_have_text("6 characters (unicode) · 1 SMS to each")
    # sending without choosing well: the server names the problem and keeps the text
    page.check("#compose-to-b")
    box.fill("   ")
    page.click("#compose-send")
    expect(page.locator("#compose-text-error")).to_contain_text("text is required")
    page.locator("#compose-text").fill("Your customer is at gate 2")
    page.click("#compose-send")
    expect(page.locator("#compose-sent")).to_contain_text("Sent to Driver")
    expect(page.locator("#compose-text")).to_have_value("")
    line = page.locator(".entry.operator", has_text="Your customer is at gate 2")
    expect(line).to_contain_text(f"Dispatcher {OPERATOR} to Driver")
    expect(line.locator(".state")).to_have_text("delivered")  # live, through the doorbell
    wait_settled(server, chat["id"], outbound=3)
    [mine] = [m for m in server.api("GET", f"/api/chats/{chat['id']}").json()["messages"] if m["kind"] == "operator"]
    assert (mine["side"], mine["sent_by"]) == ("b", f"operator:{OPERATOR}")
    assert_not_reloaded(page)


def test_the_compose_box_goes_quiet_when_the_chat_ends(dashboard, server):
    page = dashboard
    chat = create_chat(server, "+447700900711", "+447700900712")
    open_chat(page, server, chat)
    server.api("POST", f"/api/chats/{chat['id']}/end")
    expect(page.locator("#chat-ended")).to_contain_text("ended through the API")
    expect(page.locator("#compose-send")).to_be_disabled()


def test_the_pair_form_shows_an_opt_out_next_to_the_field(dashboard, server):
    page = dashboard
    server.webhook("+447700900722", PROXIES.split(",")[0], "STOP", "e2e-optout-1")
    page.fill("#pair-a", "+44 7700 900721")
    page.fill("#pair-b", "07700 900722")
    page.click("#pair-form button[type=submit]")
    expect(page.locator("#pair-b-error")).to_contain_text("opted out")
    expect(page.locator("#pair-b")).to_have_value("07700 900722")
    expect(page.locator("#pair-b")).to_have_attribute("aria-invalid", "true")
    # the Opt-outs page lists the number, masked
    page.goto(server.base + "/opt-outs")
    expect(page.locator("#opt-outs")).to_contain_text("+44 •••• ••07 22")
    # START lifts it: the same pairing now works
    server.webhook("+447700900722", PROXIES.split(",")[1], "START", "e2e-optout-2")
    page.goto(server.base + "/")
    wait_live(page)
    page.fill("#pair-a", "+44 7700 900721")
    page.fill("#pair-b", "07700 900722")
    page.click("#pair-form button[type=submit]")
    expect(page.locator("#pair-form .success")).to_contain_text("started on")


def test_the_pair_form_offers_expiry_choices_and_the_chat_shows_time_left(dashboard, server):
    page = dashboard
    page.fill("#pair-a", "+44 7700 900731")
    page.fill("#pair-b", "+44 7700 900732")
    page.select_option("#pair-expires_in", "3600")
    page.select_option("#pair-idle_timeout", "600")
    page.click("#pair-form button[type=submit]")
    expect(page.locator("#pair-form .success")).to_be_visible()
    page.click("#pair-form .success a")
    wait_live(page)
    left = page.locator("#time-left")
    expect(left).to_contain_text(re.compile(r"Time limit: ends in (59 min|1 h 00 min)"))
    expect(left).to_contain_text(re.compile(r"Ends in (9|10) min unless someone texts"))
    chat_id = int(page.url.rsplit("/", 1)[1])
    chat = server.api("GET", f"/api/chats/{chat_id}").json()
    assert chat["idle_timeout"] == 600 and chat["expires_at"]


def test_time_left_ticks(dashboard, server):
    page = dashboard
    chat = create_chat(server, "+447700900741", "+447700900742", idle_timeout=60)
    open_chat(page, server, chat)
    deadline = page.locator("#time-left [data-deadline]").last
    expect(deadline).to_have_text(re.compile(r"in (\d+ s|1 min)"))
    first = deadline.text_content()
    expect(deadline).not_to_have_text(first, timeout=5000)


def test_export_downloads_the_transcript(dashboard, server):
    page = dashboard
    chat = create_chat(server, "+447700900751", "+447700900752", a_label="Customer")
    server.webhook("+447700900751", chat["proxy_number"], "Export me", "e2e-export-1")
    wait_settled(server, chat["id"], outbound=3)
    open_chat(page, server, chat)
    with page.expect_download() as info:
        page.click("#export-transcript")
    download = info.value
    assert download.suggested_filename == f"chat-{chat['id']}-transcript.csv"
    rows = list(csv.reader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))
    assert rows[0] == ["time", "direction", "kind", "side", "label", "text", "status"]
    assert rows[3][1:] == ["inbound", "sms", "a", "Customer", "Export me", "received"]


def test_the_activity_page_names_who_did_what(dashboard, server):
    page = dashboard
    chat = create_chat(server, "+447700900761", "+447700900762")
    open_chat(page, server, chat)
    page.expect_confirm = True
    page.click("#end-chat")
    expect(page.locator("#chat-ended")).to_contain_text(f"ended by dispatcher {OPERATOR}")
    page.click("nav >> text=Activity")
    row = page.locator("#activity tr", has=page.locator(f'a[href="/chats/{chat["id"]}"]')).first
    expect(row).to_contain_text(OPERATOR)
    expect(row).to_contain_text("chat.ended")
