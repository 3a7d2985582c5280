"""The leak guard (REDACT_CONTACTS): numbers and addresses typed into a relayed text are replaced; the
dispatcher sees the original and that it was redacted."""

from __future__ import annotations

import pytest

from webapp.proxy import EMAIL_REMOVED, NUMBER_REMOVED, redact_contacts

from .conftest import A, B

N, E = NUMBER_REMOVED, EMAIL_REMOVED


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call me on 07700 900123", f"call me on {N}"),
        ("my number is +44 7700 900123!", f"my number is {N}!"),
        ("0 7 7 0 0 9 0 0 1 2 3 is me", f"{N} is me"),
        ("ring 020 7946 0000 or (0161) 496 0000", f"ring {N} or {N}"),
        ("text 447700900123", f"text {N}"),
        ("US: +1 415 555 2671", f"US: {N}"),
        ("mail bob.smith+taxi@example.co.uk now", f"mail {E} now"),
        ("a@b.io and 07911123456", f"{E} and {N}"),
    ],
)
def test_numbers_and_addresses_are_replaced(text, expected):
    assert redact_contacts(text, "GB").text == expected


@pytest.mark.parametrize(
    "text",
    ["see you at 12:30", "it costs £15.50", "order 123456", "booking 2026-11-29", "ref ABC-12345678",
     "5 minutes away", "on 29/11/2026 at 10:30", ""],
)
def test_times_prices_dates_and_short_references_are_left_alone(text):
    result = redact_contacts(text, "GB")
    assert result.text == text and not result.changed


def test_what_was_found_is_named():
    assert redact_contacts("x@y.com 07700900123", "GB").found == ("email", "number")
    assert redact_contacts("07700900123", "GB").found == ("number",)


def test_national_numbers_are_read_in_the_given_region():
    assert redact_contacts("appelle 06 12 34 56 78", "FR").text == f"appelle {N}"


# ------------------------------------------------------------------ through the webhook


@pytest.mark.config(REDACT_CONTACTS=True)
@pytest.mark.parametrize("multipart", [False, True], ids=["single", "multipart"])
def test_a_relayed_text_is_redacted_and_the_original_kept(api, pair, sms, sent, multipart):
    chat = pair(A, B)
    sent()
    original = "Text me direct on 07700 900777 or joe@mail.com"
    if multipart:
        half = len(original) // 2
        for i, piece in enumerate((original[:half], original[half:]), start=1):
            sms(A, chat["proxy_number"], piece, **{"concat-ref": "5", "concat-total": "2", "concat-part": str(i)})
    else:
        sms(A, chat["proxy_number"], original)
    [out] = sent()
    assert out["to"] == B
    assert out["text"] == f"Text me direct on {N} or {E}"
    assert "7700" not in out["text"] and "@" not in out["text"]
    messages = api("get", f"/api/chats/{chat['id']}").json["messages"]
    inbound = next(m for m in messages if m["direction"] == "inbound")
    relay = next(m for m in messages if m["kind"] == "relay")
    assert inbound["text"] == original and inbound["redacted"] is True
    assert relay["text"] == out["text"] and relay["redacted"] is True


@pytest.mark.config(REDACT_CONTACTS=True)
def test_a_text_without_contact_details_is_relayed_unchanged(api, pair, sms, sent):
    chat = pair(A, B)
    sent()
    sms(B, chat["proxy_number"], "Outside at 12:30, blue car, £15.50")
    assert [s["text"] for s in sent()] == ["Outside at 12:30, blue car, £15.50"]
    messages = api("get", f"/api/chats/{chat['id']}").json["messages"]
    assert not any(m["redacted"] for m in messages)


def test_off_by_default(api, pair, sms, sent, app):
    assert app.config["REDACT_CONTACTS"] is False
    chat = pair(A, B)
    sent()
    sms(A, chat["proxy_number"], "call 07700 900777")
    assert [s["text"] for s in sent()] == ["call 07700 900777"]


@pytest.mark.config(REDACT_CONTACTS=True)
def test_the_dispatcher_sees_the_original_and_that_it_was_redacted(dispatcher, pair, sms):
    chat = pair(A, B)
    sms(A, chat["proxy_number"], "my email is joe@mail.com")
    page = dispatcher.get(f"/chats/{chat['id']}").text
    assert "my email is joe@mail.com" in page
    assert "contact details removed before forwarding" in page
    assert f"Forwarded as: my email is {E}" in page
