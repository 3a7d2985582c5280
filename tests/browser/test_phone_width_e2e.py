"""The chats and chat pages at phone width (issue 11, item 8): nothing wider than the screen.

At 412 px (a common Android phone) and 360 px (the narrowest in common use) the page must not scroll
sideways (`scrollWidth <= innerWidth`), and the things a dispatcher uses there stay on screen: the search box,
the tabs, each chat's link, the pair form's button, the compose box and "End chat".
"""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in, wait_live, watch
from tests.browser.test_dashboard_e2e import create_chat

OVERFLOW = """() => {
  const w = window.innerWidth;
  const wide = [...document.querySelectorAll('body *')]
    .filter(el => { const r = el.getBoundingClientRect(); return r.width > 0 && (r.right > w + 0.5 || r.left < -0.5); })
    .filter(el => !el.closest('.sr-only'))
    .slice(0, 5).map(el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + '.' + el.className);
  return {scroll: document.documentElement.scrollWidth, inner: w, wide: wide};
}"""


def assert_fits(page, what: str, width: int) -> None:
    page.evaluate("() => window.scrollTo(0, 0)")
    got = page.evaluate(OVERFLOW)
    if os.environ.get("PHONE_SHOTS"):
        page.screenshot(path=f"/tmp/phone-{what}-{width}.png", full_page=True)
    # a phone's browser widens the layout to fit wide content (and zooms out): innerWidth grows past the screen
    assert got["inner"] == width, f"{what}: the page is wider than the screen: {got}"
    assert got["scroll"] <= got["inner"], f"{what}: {got}"
    assert not got["wide"], f"{what}: elements outside the screen: {got}"


ON_SCREEN = """(sel) => { const el = document.querySelector(sel); if (!el) return false;
  const r = el.getBoundingClientRect(); return r.width > 0 && r.left >= 0 && r.right <= window.innerWidth + 0.5; }"""


def on_screen(page, selector: str) -> None:
    # in one evaluation, retried: a live refresh may be swapping the element in at that moment
    page.wait_for_function(ON_SCREEN, arg=selector, timeout=5000)


@pytest.mark.parametrize("width", [412, 360])
def test_chats_and_chat_pages_fit_a_phone(browser, server, width, screenshots_dir):
    context = browser.new_context(viewport={"width": width, "height": 860}, is_mobile=True, has_touch=True)
    page = context.new_page()
    problems = watch(page)
    try:
        chat = create_chat(
            server, f"+44770090{width}1", f"+44770090{width}2", a_label="Customer with a rather long name",
            b_label="Driver Bartholomew-Fitzgerald", reference=f"booking-2026-11-30-very-long-reference-{width}",
        )
        long_link = "https://example.com/a/very/long/link/without/any/spaces/at/all/" + "x" * 60
        server.webhook(f"+44770090{width}1", chat["proxy_number"], long_link, f"e2e-phone-{width}")
        sign_in(page, server.base)
        wait_live(page)
        expect(page.locator(f"#chat-row-{chat['id']}")).to_be_visible()
        assert_fits(page, "chats", width)
        for selector in ("input[name=q]", ".tabs", f"#chat-row-{chat['id']} .id a", "#pair-form button[type=submit]"):
            on_screen(page, selector)
        page.locator("input[name=q]").fill(f"very-long-reference-{width}")
        expect(page.locator(".chat-row")).to_have_count(1)
        assert_fits(page, "search", width)

        page.goto(f"{server.base}/chats/{chat['id']}")
        wait_live(page)
        expect(page.locator(".entry.from-a")).to_have_count(1)
        assert_fits(page, "chat", width)
        if screenshots_dir and width == 412:
            page.screenshot(path=str(screenshots_dir / "phone-chat.png"))
        for selector in ("#end-chat", "#compose textarea", "#compose button[type=submit]", ".entry.from-a .bubble"):
            on_screen(page, selector)
        for path in ("/unrouted", "/numbers", "/activity"):  # their tables may scroll inside themselves
            page.goto(server.base + path)
            wait_live(page)  # (a page left while its live connection is still starting holds a slot for a while)
            got = page.evaluate(OVERFLOW)
            assert got["inner"] == width and got["scroll"] <= width, (path, got)
        assert problems == []
    finally:
        context.close()
