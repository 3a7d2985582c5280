"""The pure domain, without an app."""

import pytest

from webapp.proxy import (
    InvalidNumber,
    Parties,
    PoolEntry,
    choose_proxy,
    is_opt_out,
    mask,
    mask_for_log,
    other_party,
    parse_number,
    region_of,
    render,
    segments,
    sms_type,
    to_vonage,
)


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+447700900123", "GB", "+447700900123"),
        ("07700 900123", "GB", "+447700900123"),
        ("(0)7700-900-123", "GB", "+447700900123"),
        ("447700900123", "GB", "+447700900123"),  # Vonage's form: digits without "+"
        ("0044 7700 900123", "GB", "+447700900123"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("+1 415 555 2671", "GB", "+14155552671"),
        ("030 123456", "DE", "+4930123456"),
    ],
)
def test_parse_number_reads_international_and_national_input(raw, region, expected):
    assert parse_number(raw, region) == expected


@pytest.mark.parametrize("raw", ["", "   ", None, 447700900123, "abc", "12", "+44 12", "+999 1234567", "x" * 40])
def test_parse_number_refuses_what_is_not_a_possible_number(raw):
    with pytest.raises(InvalidNumber):
        parse_number(raw, "GB")


def test_region_and_wire_form():
    assert region_of("+447700900123") == "GB"
    assert region_of("+14155552671") == "US"
    assert to_vonage("+447700900123") == "447700900123"


def test_mask_hides_all_but_country_code_and_last_four():
    assert mask("+447700901234") == "+44 •••• ••12 34"
    assert mask("+14155552671") == "+1 •••• ••26 71"
    assert mask(None) == "—"


def test_log_mask_is_compact_and_hides_the_middle():
    assert mask_for_log("+447700901234") == "+44••••••1234"
    assert "7700" not in mask_for_log("+447700901234")


POOL = [
    PoolEntry("+447700900001", "GB", 5),
    PoolEntry("+447700900002", "GB", 1),
    PoolEntry("+14155550100", "US", 0),
]


def test_choose_proxy_prefers_the_pairs_previous_number():
    assert choose_proxy(POOL, set(), {"GB"}, previous=["+447700900001"]) == "+447700900001"


def test_choose_proxy_skips_a_previous_number_that_is_now_busy():
    assert choose_proxy(POOL, {"+447700900001"}, {"GB"}, previous=["+447700900001"]) == "+447700900002"


def test_choose_proxy_prefers_the_participants_country_then_least_loaded():
    assert choose_proxy(POOL, set(), {"GB"}) == "+447700900002"
    assert choose_proxy(POOL, set(), {"US"}) == "+14155550100"
    assert choose_proxy(POOL, {"+447700900002"}, {"GB"}) == "+447700900001"
    assert choose_proxy(POOL, set(), {"FR"}) == "+14155550100"  # no French number: least loaded


def test_choose_proxy_returns_none_when_nothing_is_free():
    assert choose_proxy(POOL, {p.number for p in POOL}, {"GB"}) is None
    assert choose_proxy([], set(), {"GB"}) is None


def test_other_party():
    parties = Parties("+441", "+442")
    assert other_party(parties, "+441") == ("a", "+442")
    assert other_party(parties, "+442") == ("b", "+441")
    with pytest.raises(ValueError):
        other_party(parties, "+443")


@pytest.mark.parametrize(
    "text", ["STOP", "stop", " Stop ", "STOP!", "unsubscribe", "QUIT.", "end", "StopAll", "cancel"]
)
def test_opt_out_words(text):
    assert is_opt_out(text)


@pytest.mark.parametrize("text", ["", None, "please stop at the corner", "don't cancel", "stopping by", "the end?"])
def test_stop_words_inside_sentences_are_ordinary_text(text):
    assert not is_opt_out(text)


def test_sms_type_and_segments():
    assert sms_type("Hello world") == "text"
    assert sms_type("Café crème €5") == "text"
    assert sms_type("Ça va? 👍") == "unicode"
    assert segments("x" * 160) == 1
    assert segments("x" * 161) == 2
    assert segments("€" * 81) == 2
    assert segments("a" * 70 + "👍") == 2
    assert segments("Привет") == 1


def test_render_fills_known_placeholders_and_keeps_unknown_ones():
    assert render("Hi {other} via {proxy} {nope}", {"other": "your driver", "proxy": "+44"}) == (
        "Hi your driver via +44 {nope}"
    )
