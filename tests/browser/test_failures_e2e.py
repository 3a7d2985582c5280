"""Failed deliveries and incomplete texts in a real browser against the real server (issue 11, items 4 and 6).

The simulated gateway reports every text to FAILING_NUMBER as failed with err-code 2 (a phone that is off),
through the same delivery-receipt webhook Vonage uses; multipart texts come in through the inbound webhook, part
by part, as Vonage sends them. Each test uses its own phone numbers, since the server (and its database) is
shared."""

from __future__ import annotations

import requests
from playwright.sync_api import expect

from tests.browser.conftest import FAILING_NUMBER, OPERATOR, wait_live
from tests.browser.test_dashboard_e2e import assert_not_reloaded, create_chat, mark_no_reload


def open_chat(page, server, chat: dict) -> None:
    page.goto(f"{server.base}/chats/{chat['id']}")
    wait_live(page)


def part(server, sender: str, proxy: str, ref: str, n: int, total: int, text: str) -> None:
    resp = requests.post(server.base + "/webhooks/inbound-sms", timeout=10, data={
        "msisdn": sender.lstrip("+"), "to": proxy.lstrip("+"), "text": text, "messageId": f"{ref}-{n}",
        "concat": "true", "concat-ref": ref, "concat-total": str(total), "concat-part": str(n)})
    assert resp.status_code == 204, resp.text


def test_a_failed_delivery_is_explained_and_its_attempts_survive_a_resend(dashboard, server, screenshots_dir):
    page = dashboard
    chat = create_chat(server, "+447700900801", FAILING_NUMBER, a_label="Customer", b_label="Driver")
    open_chat(page, server, chat)
    mark_no_reload(page)
    server.webhook("+447700900801", chat["proxy_number"], "Where are you?", "fail-e2e-1")
    line = page.locator(".entry.from-a", has_text="Where are you?")
    # live: the receipt says failed, err-code 2; the line says what that means and what to do
    problem = line.locator(".delivery-problem")
    expect(problem).to_contain_text("Not delivered to Driver: The phone is switched off or out of coverage.")
    expect(problem).to_contain_text("What to do: Resend it later, or reach them another way if it is urgent.")
    expect(problem).to_contain_text("(err-code 2: Absent Subscriber - Temporary)")
    expect(line.locator(".bubble .state")).to_have_text("failed")
    assert "err-code 2" not in line.locator(".bubble").inner_text()  # no bare code where the state is
    assert_not_reloaded(page)

    line.locator("button", has_text="Resend").click()  # a plain form post: the page comes back
    line = page.locator(".entry.from-a", has_text="Where are you?")
    attempts = line.locator(".attempts li.attempt")
    expect(attempts).to_have_count(2)
    # the earlier attempt stays, with its reason and who resent it; the new one fails too (the phone is off)
    expect(attempts.nth(0)).to_contain_text("Attempt 1")
    expect(attempts.nth(0)).to_contain_text("failed: The phone is switched off or out of coverage. (err-code 2)")
    expect(attempts.nth(0)).to_contain_text(f"resent by {OPERATOR}")
    expect(attempts.nth(1)).to_have_attribute("data-status", "failed")  # live again, after the new receipt
    expect(attempts.nth(1)).to_contain_text("Attempt 2")
    expect(line.locator(".delivery-problem")).to_contain_text("The phone is switched off")  # resend once more
    # one line for the text, not one per attempt
    expect(page.locator(".entry", has_text="Where are you?")).to_have_count(1)
    if screenshots_dir:
        line.screenshot(path=str(screenshots_dir / "failed-delivery.png"))
    messages = server.api("GET", f"/api/chats/{chat['id']}").json()["messages"]
    relays = [m for m in messages if m["kind"] == "relay"]
    assert [m["status"] for m in relays] == ["failed", "failed"]
    assert relays[0]["resent_as"] == relays[1]["id"] and relays[1]["resend_of"] == relays[0]["id"]
    assert relays[1]["error_detail"]["name"] == "Absent Subscriber - Temporary"


def test_an_incomplete_multipart_text_is_flagged_live(dashboard, server):
    page = dashboard
    chat = create_chat(server, "+447700900811", "+447700900812", a_label="Customer", b_label="Driver")
    open_chat(page, server, chat)
    mark_no_reload(page)
    sender, proxy = "+447700900811", chat["proxy_number"]

    # a set that completes: flagged while it arrives, then relayed whole
    part(server, sender, proxy, "mp-e2e-1", 1, 3, "Running ")
    held = page.locator(".held-parts")
    expect(held).to_contain_text("incomplete: 1 of 3 parts arrived")
    expect(held).to_contain_text("waiting for parts 2, 3")
    part(server, sender, proxy, "mp-e2e-1", 3, 3, "minutes late")
    expect(held).to_contain_text("incomplete: 2 of 3 parts arrived")
    part(server, sender, proxy, "mp-e2e-1", 2, 3, "ten ")
    expect(page.locator(".entry.from-a", has_text="Running ten minutes late")).to_be_visible()
    expect(held).to_have_count(0)

    # a set whose middle part never comes: relayed as it is after MULTIPART_TIMEOUT_SECONDS (4 s here), marked
    part(server, sender, proxy, "mp-e2e-2", 1, 3, "Gate ")
    part(server, sender, proxy, "mp-e2e-2", 3, 3, " north side")
    expect(held).to_contain_text("incomplete: 2 of 3 parts arrived")
    line = page.locator(".entry.from-a", has_text="[part 2 of 3 missing]")
    expect(line).to_be_visible(timeout=15_000)
    expect(line.locator(".incomplete")).to_have_text("incomplete: 2 of 3 parts arrived (part 2 never came)")
    expect(held).to_have_count(0)
    assert_not_reloaded(page)
