"""The table of Vonage's delivery errors (webapp/delivery_errors.py) and its documentation (docs/vonage-errors.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from webapp import delivery_errors as de

ROOT = Path(__file__).resolve().parents[1]

# Vonage's documented codes and names (Delivery receipts, DLR error codes; Troubleshooting SMS / API Errors).
RECEIPT_NAMES = {
    0: "Delivered", 1: "Unknown", 2: "Absent Subscriber - Temporary", 3: "Absent Subscriber - Permanent",
    4: "Call Barred by User", 5: "Portability Error", 6: "Anti-Spam Rejection", 7: "Handset Busy",
    8: "Network Error", 9: "Illegal Number", 10: "Illegal Message", 11: "Unroutable",
    12: "Destination Unreachable", 13: "Subscriber Age Restriction", 14: "Number Blocked by Carrier",
    15: "Prepaid Insufficient Funds", 16: "Gateway Quota Exceeded", 50: "Entity Filter", 51: "Header Filter",
    52: "Content Filter", 53: "Consent Filter", 54: "Regulation Error", 99: "General Error",
}
SEND_NAMES = {
    0: "Success", 1: "Throttled", 2: "Missing Parameters", 3: "Invalid Parameters", 4: "Invalid Credentials",
    5: "Internal Error", 6: "Invalid Message", 7: "Number Barred", 8: "Partner Account Barred",
    9: "Partner Quota Violation", 10: "Too Many Existing Binds", 11: "Account Not Enabled For HTTP",
    12: "Message Too Long", 14: "Invalid Signature", 15: "Invalid Sender Address", 22: "Invalid Network Code",
    23: "Invalid Callback URL", 29: "Non-Whitelisted Destination", 32: "Signature And API Secret Disallowed",
    33: "Number De-activated",
}


def test_every_documented_code_is_in_the_tables_with_vonages_name():
    assert {c: e.name for c, e in de.RECEIPT_ERRORS.items()} == RECEIPT_NAMES
    assert {c: e.name for c, e in de.SEND_STATUSES.items()} == SEND_NAMES


@pytest.mark.parametrize("table", [de.RECEIPT_ERRORS, de.SEND_STATUSES])
def test_every_code_has_a_sentence_and_a_suggestion(table):
    for code, e in table.items():
        assert e.code == code
        assert e.summary.endswith(".") and len(e.summary) > 15, code
        assert e.suggestion and not e.suggestion.endswith("."), code  # the page adds the full stop
        assert "`" not in e.summary + e.suggestion  # words for a dispatcher, not markup


def test_a_receipt_code_becomes_a_sentence_and_a_suggestion():
    e = de.explain_receipt("2")
    assert e.summary == "The phone is switched off or out of coverage."
    assert e.suggestion.startswith("Resend it later")
    assert e.temporary and e.label == "err-code 2"
    assert de.explain_receipt(12).sentence == "The number is not reachable: check it with the person, then resend"
    assert not de.explain_receipt(3).temporary


def test_unknown_codes_get_a_generic_sentence_that_names_the_code():
    e = de.explain_receipt("77")
    assert "err-code 77" in e.summary and e.code == 77 and e.label == "err-code 77"
    s = de.explain_send_status(42)
    assert "send status 42" in s.summary and s.code == 42 and s.label == "send status 42"
    odd = de.explain_send_status("x9")
    assert "send status x9" in odd.summary and odd.code is None


@pytest.mark.parametrize(
    ("stored", "source", "code", "words"),
    [
        ("delivery failed (err-code 6)", de.RECEIPT, 6, "spam filter"),
        ("delivery rejected (err-code 9, 14)", de.RECEIPT, 9, "refuses our texts"),
        ("delivery expired (err-code ?)", de.RECEIPT, None, "expired"),
        ("delivery failed (err-code 0)", de.RECEIPT, None, "could not deliver"),  # never "delivered"
        ("status 7: Number barred", de.SEND, 7, "barred"),
        ("gave up after 12 attempts: status 1: Throttled", de.SEND, 1, "faster than"),
        ("status 29: Non White-listed Destination (1 of 2 parts accepted)", de.SEND, 29, "trial account"),
        ("HTTP 503", de.TRANSPORT, None, "not available"),
        ("HTTP 429: too many", de.TRANSPORT, None, "slow down"),
        ("connection failed: ConnectionError", de.TRANSPORT, None, "could not reach"),
        ("no answer: ReadTimeout; waiting 20 s for a delivery receipt, then resending", de.TRANSPORT, None,
         "may or may not"),
        ("interrupted while sending (worker stopped)", de.TRANSPORT, None, "may or may not"),
        ("something nobody expected", de.TRANSPORT, None, "something nobody expected"),
    ],
)
def test_the_reasons_the_outbox_stores_are_explained(stored, source, code, words):
    e = de.explain(stored)
    assert (e.source, e.code) == (source, code)
    assert words in e.summary


def test_nothing_to_explain():
    assert de.explain(None) is None and de.explain("") is None


def test_as_json():
    assert de.explain_receipt(6).as_json() == {
        "source": "delivery_receipt", "code": 6, "name": "Anti-Spam Rejection",
        "summary": de.RECEIPT_ERRORS[6].summary, "suggestion": de.RECEIPT_ERRORS[6].suggestion,
        "temporary": False,
    }


def test_the_documentation_lists_the_same_codes_and_words():
    doc = (ROOT / "docs" / "vonage-errors.md").read_text()
    receipts = doc.split("## Delivery-receipt err-codes")[1].split("## Send statuses")[0]
    sends = doc.split("## Send statuses")[1].split("## Failures without a code")[0]
    row = re.compile(r"^\| (\d+) \| ([^|]+) \| ([^|]+) \| ([^|]+) \|", re.M)
    for section, table in ((receipts, de.RECEIPT_ERRORS), (sends, de.SEND_STATUSES)):
        rows = {int(m[1]): (m[2].strip(), m[3].strip(), m[4].strip()) for m in row.finditer(section)}
        assert rows == {c: (e.name, e.summary, e.suggestion) for c, e in table.items()}
