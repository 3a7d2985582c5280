"""The dashboard in a real browser against the real server: sign-in, pairing, live updates, escaping, ending,
the simulator. Each test uses its own phone numbers, since the server (and its database) is shared."""

from __future__ import annotations

import re
import time

from playwright.sync_api import expect

from tests.browser.conftest import OPERATOR, PASSWORD, wait_live

EVIL = "<img src=x onerror=alert(1)> <script>alert(2)</script> & done"


def create_chat(server, a: str, b: str, **extra) -> dict:
    resp = server.api("POST", "/api/chats", json={"a": a, "b": b, **extra})
    assert resp.status_code == 201, resp.text
    return resp.json()


def wait_settled(server, chat_id: int, outbound: int) -> None:
    """Wait until the server has sent `outbound` messages of this chat and recorded their delivery."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        messages = server.api("GET", f"/api/chats/{chat_id}").json()["messages"]
        out = [m for m in messages if m["direction"] == "outbound"]
        if len(out) >= outbound and all(m["status"] == "delivered" for m in out):
            return
        time.sleep(0.1)
    raise AssertionError(f"chat {chat_id} did not settle: {messages}")


def mark_no_reload(page) -> None:
    page.evaluate("() => { window.__sameDocument = true; }")


def assert_not_reloaded(page) -> None:
    assert page.evaluate("() => window.__sameDocument === true"), "the page was reloaded"


def test_sign_in(page, server):
    page.goto(server.base + "/numbers")
    expect(page).to_have_url(re.compile(r"/login\?next=/numbers$"))
    page.fill("#name", OPERATOR)
    page.fill("#password", "not the password")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_contain_text("do not match")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(server.base + "/numbers")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    expect(page.locator(".who")).to_have_text(OPERATOR)
    page.click("text=Sign out")
    expect(page).to_have_url(server.base + "/login")


def test_pair_two_numbers_through_the_form(dashboard, server):
    page = dashboard
    page.fill("#pair-a", "07700 900501")
    page.fill("#pair-b", "123")
    page.fill("#pair-a_label", "Customer")
    page.click("#pair-form button[type=submit]")
    expect(page.locator("#pair-b-error")).to_contain_text("not a possible phone number")
    expect(page.locator("#pair-a")).to_have_value("07700 900501")  # what was typed is kept
    expect(page.locator("#pair-a_label")).to_have_value("Customer")
    page.fill("#pair-b", "+44 7700 900502")
    page.fill("#pair-b_label", "Driver")
    page.fill("#pair-reference", "RIDE-501")
    page.click("#pair-form button[type=submit]")
    expect(page.locator("#pair-form .success")).to_contain_text("started on")
    expect(page.locator("#pair-a")).to_have_value("")
    row = page.locator(".chat-row", has_text="RIDE-501")
    expect(row).to_be_visible()  # the list updated itself (chats_changed doorbell)
    expect(row).to_contain_text("+44 •••• ••05 01")  # masked in the operator's view
    expect(row).to_contain_text("Customer")
    # search narrows the list as you type (by reference here; numbers and labels work too)
    page.fill("input[name=q]", "ride-501")
    expect(page.locator(".chat-row")).to_have_count(1)
    page.fill("input[name=q]", "no such chat")
    expect(page.locator("#chat-list .empty")).to_contain_text("No chat, active or ended, matches")


def test_inbound_text_appears_live_with_its_delivery_state(dashboard, server):
    page = dashboard
    chat = create_chat(server, "+447700900511", "+447700900512", a_label="Customer", b_label="Driver")
    page.goto(f"{server.base}/chats/{chat['id']}")
    wait_live(page)
    intros = page.locator(".entry.system")
    expect(intros).to_have_count(2)
    expect(intros.first.locator(".state")).to_have_text("delivered")
    mark_no_reload(page)
    server.webhook("+447700900511", chat["proxy_number"], "Running five minutes late", "e2e-live-1")
    line = page.locator(".entry.from-a", has_text="Running five minutes late")
    expect(line).to_be_visible()
    # queued -> submitted -> delivered (the simulated gateway reports delivery a moment after sending)
    expect(line.locator(".state")).to_have_text("delivered")
    read_url = f"{server.base}/chats/{chat['id']}/read"
    with page.expect_response(lambda r: r.url == read_url and r.status == 204):  # the open chat is read
        server.webhook("+447700900512", chat["proxy_number"], "No problem", "e2e-live-2")
        expect(page.locator(".entry.from-b", has_text="No problem")).to_be_visible()
    assert_not_reloaded(page)
    # the texts arrived while the chat was open on screen, so the list does not flag them as unread
    page.goto(server.base + "/")
    expect(page.locator(f"#chat-row-{chat['id']}")).to_be_visible()
    expect(page.locator(f"#chat-row-{chat['id']} .unread-badge")).to_have_count(0)


def test_a_second_dispatcher_sees_a_chat_created_through_the_api(dashboard, second_dispatcher, server):
    for page in (dashboard, second_dispatcher):
        mark_no_reload(page)
    chat = create_chat(server, "+447700900521", "+447700900522", reference="API-521")
    for page in (dashboard, second_dispatcher):
        row = page.locator(f"#chat-row-{chat['id']}")
        expect(row).to_be_visible()
        expect(row).to_contain_text("API-521")
        assert_not_reloaded(page)


def test_hostile_message_text_is_shown_as_text(dashboard, server):
    page = dashboard
    chat = create_chat(server, "+447700900531", "+447700900532")
    page.goto(f"{server.base}/chats/{chat['id']}")
    wait_live(page)
    server.webhook("+447700900531", chat["proxy_number"], EVIL, "e2e-evil-1")
    line = page.locator(".entry.from-a .text")
    expect(line).to_have_text(EVIL)  # pushed live, and literally
    assert page.evaluate("() => document.querySelectorAll('main img, main script').length") == 0
    page.goto(server.base + "/")
    expect(page.locator(f"#chat-row-{chat['id']} .snippet")).to_contain_text("<img src=x onerror=alert(1)>")
    assert page.evaluate("() => document.querySelectorAll('main img, main script').length") == 0
    server.api("POST", f"/api/chats/{chat['id']}/end")  # keep the list tidy for the screenshots
    # the dashboard fixture fails the test if alert() ran or the CSP reported anything


def test_ending_a_chat_updates_both_dispatchers(dashboard, second_dispatcher, server):
    chat = create_chat(server, "+447700900541", "+447700900542", reference="END-541")
    url = f"{server.base}/chats/{chat['id']}"
    for page in (dashboard, second_dispatcher):
        page.goto(url)
        wait_live(page)
    second_dispatcher.goto(server.base + "/")
    wait_live(second_dispatcher)
    expect(second_dispatcher.locator(f"#chat-row-{chat['id']}")).to_be_visible()
    dashboard.expect_confirm = True
    dashboard.click("#end-chat")
    expect(dashboard.locator("#chat-ended")).to_contain_text(f"ended by dispatcher {OPERATOR}")
    expect(dashboard.locator("#end-chat")).to_have_count(0)
    # the other dispatcher's active list drops it without a reload
    expect(second_dispatcher.locator(f"#chat-row-{chat['id']}")).to_have_count(0)
    second_dispatcher.goto(url)
    expect(second_dispatcher.locator("#chat-ended")).to_be_visible()
    expect(second_dispatcher.locator(".entry.system", has_text="conversation has ended")).to_have_count(2)


def test_ending_a_chat_shows_on_an_open_chat_page(dashboard, second_dispatcher, server):
    chat = create_chat(server, "+447700900551", "+447700900552")
    url = f"{server.base}/chats/{chat['id']}"
    for page in (dashboard, second_dispatcher):
        page.goto(url)
        wait_live(page)
        mark_no_reload(page)
    dashboard.expect_confirm = True
    dashboard.click("#end-chat")
    expect(second_dispatcher.locator("#chat-ended")).to_be_visible()
    expect(second_dispatcher.locator("#end-chat")).to_have_count(0)
    assert_not_reloaded(second_dispatcher)


def test_simulator_end_to_end(dashboard, server, screenshots_dir):
    page = dashboard
    phones = page.context.new_page()
    phones.goto(server.base + "/simulator/")
    wait_live(phones)
    # pair Handset 1 and Handset 2 from the dashboard
    page.fill("#pair-a", "+44 7700 900111")
    page.fill("#pair-a_label", "Customer")
    page.fill("#pair-b", "+44 7700 900222")
    page.fill("#pair-b_label", "Driver")
    page.fill("#pair-reference", "RIDE-1042")
    page.click("#pair-form button[type=submit]")
    expect(page.locator("#pair-form .success")).to_be_visible()
    chat_link = page.locator("#pair-form .success a")
    chat_url = server.base + chat_link.get_attribute("href")
    # both phones get their introduction
    h1, h2 = phones.locator("#handset-447700900111"), phones.locator("#handset-447700900222")
    expect(h1.locator(".sms.theirs")).to_contain_text("connected with your Driver")
    expect(h2.locator(".sms.theirs")).to_contain_text("connected with your Customer")
    page.goto(chat_url)
    wait_live(page)
    # the customer texts from the phone: the driver's phone and the dashboard both show it
    h1.locator("input[name=text]").fill("Hi, I'm outside the station")
    h1.locator("button[type=submit]").click()
    expect(h1.locator(".sms.mine")).to_contain_text("outside the station")
    expect(h2.locator(".sms.theirs", has_text="outside the station")).to_be_visible()
    expect(page.locator(".entry.from-a", has_text="outside the station").locator(".state")).to_have_text(
        "delivered"
    )
    h2.locator("input[name=text]").fill("Blue Skoda, two minutes away")
    h2.locator("button[type=submit]").click()
    expect(h1.locator(".sms.theirs", has_text="Blue Skoda")).to_be_visible()
    expect(page.locator(".entry.from-b", has_text="Blue Skoda").locator(".state")).to_have_text("delivered")
    if screenshots_dir:
        page.screenshot(path=str(screenshots_dir / "chat.png"))
        page.goto(server.base + "/")
        wait_live(page)
        expect(page.locator(".chat-row", has_text="RIDE-1042")).to_be_visible()
        page.screenshot(path=str(screenshots_dir / "chats.png"))
        phones.screenshot(path=str(screenshots_dir / "simulator.png"))


def test_a_dropped_connection_catches_up_on_reconnect(dashboard, server):
    page = dashboard
    chat = create_chat(server, "+447700900561", "+447700900562")
    page.goto(f"{server.base}/chats/{chat['id']}")
    wait_live(page)
    mark_no_reload(page)
    page.evaluate("() => window.__socket.disconnect()")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "offline")
    server.webhook("+447700900561", chat["proxy_number"], "Sent while you were offline", "e2e-gap-1")
    server.api("POST", f"/api/chats/{chat['id']}/end")
    # 2 introductions, 1 relay, 2 end notices: once all are delivered, no doorbell is still to come,
    # so only the catch-up on reconnect can bring the page up to date
    wait_settled(server, chat["id"], outbound=5)
    page.evaluate("() => window.__socket.connect()")
    wait_live(page)
    expect(page.locator(".entry.from-a", has_text="Sent while you were offline")).to_be_visible()
    expect(page.locator("#chat-ended")).to_contain_text("ended through the API")
    assert_not_reloaded(page)


def test_a_page_whose_session_ended_goes_to_sign_in(dashboard, server):
    page = dashboard
    page.context.clear_cookies()  # as if the session expired; the open socket still rings the doorbell
    create_chat(server, "+447700900591", "+447700900592")
    # the list's refresh is refused (401 + HX-Redirect), so the page goes to the sign-in form
    expect(page).to_have_url(re.compile(r"/login$"))


def test_a_burst_of_texts_all_show_with_their_final_state(dashboard, second_dispatcher, server):
    chat = create_chat(server, "+447700900601", "+447700900602", reference="BURST-601")
    second_dispatcher.goto(f"{server.base}/chats/{chat['id']}")
    wait_live(second_dispatcher)
    for i in range(12):  # doorbells arrive while earlier fragment fetches are still in flight
        sender = "+447700900601" if i % 2 == 0 else "+447700900602"
        server.webhook(sender, chat["proxy_number"], f"burst {i:02d}", f"e2e-burst-{i}")
    wait_settled(server, chat["id"], outbound=14)
    lines = second_dispatcher.locator(".entry.from-a, .entry.from-b")
    expect(lines).to_have_count(12)
    expect(second_dispatcher.locator('.entry .state[data-status="delivered"]')).to_have_count(14)
    expect(dashboard.locator(f"#chat-row-{chat['id']}")).to_contain_text("burst 11")
