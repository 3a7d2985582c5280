"""Pairing refuses numbers that cannot receive texts (issue 11), and introductions keep the label's case."""

import pytest

from webapp.config import from_env
from webapp.outbox import drain_once
from webapp.proxy import sms_refusal

A, B = "+447700900111", "+447700900222"
LANDLINE = "020 7946 0000"  # Ofcom's drama range for London: a valid UK fixed line, +44 20 7946 0000


@pytest.mark.parametrize(
    ("number", "refused"),
    [
        ("+442079460000", "a landline number"),  # UK fixed line
        ("+4930123456", "a landline number"),  # German fixed line
        ("+19005550123", "a premium-rate number"),
        ("+18005550123", "a toll-free number"),
        ("+448001234567", "a toll-free number"),  # UK 0800
        ("+443001234567", "a company's non-geographic number"),  # UK 03
        ("+447400123456", None),  # UK mobile
        ("+33612345678", None),  # French mobile
        ("+14155550100", None),  # US: fixed line or mobile, cannot be told apart
        ("+447700900123", None),  # Ofcom's drama mobile range: not valid, type unknown; the tests' numbers
        ("+445612345678", None),  # VoIP: some receive texts
    ],
)
def test_sms_refusal_by_number_type(number, refused):
    assert sms_refusal(number) == refused


def test_allow_fixed_line_lifts_only_the_landline_refusal():
    assert sms_refusal("+442079460000", allow_fixed_line=True) is None
    assert sms_refusal("+19005550123", allow_fixed_line=True) == "a premium-rate number"


def test_allow_fixed_line_is_read_from_the_environment():
    assert from_env({"ALLOW_FIXED_LINE": "true"}) == {"ALLOW_FIXED_LINE": True}
    assert from_env({"ALLOW_FIXED_LINE": "false"}) == {"ALLOW_FIXED_LINE": False}


def test_api_refuses_a_landline_naming_the_field(client, api_headers):
    resp = client.post("/api/chats", json={"a": A, "b": LANDLINE}, headers=api_headers)
    assert resp.status_code == 400
    assert resp.json["field"] == "b"
    assert "landline" in resp.json["error"] and "cannot receive texts" in resp.json["error"]
    assert client.get("/api/chats", headers=api_headers).json["chats"] == []


def test_legacy_endpoint_names_its_own_field_for_a_landline(client, api_headers):
    resp = client.post("/chat", json={"userANumber": LANDLINE, "userBNumber": B}, headers=api_headers)
    assert resp.status_code == 400
    assert resp.json["field"] == "userANumber"
    assert resp.json["error"].startswith("userANumber: '020 7946 0000' is a landline number")
    form = client.post("/chat", data={"userANumber": A, "userBNumber": "+19005550123"}, headers=api_headers)
    assert form.status_code == 400
    assert form.json["field"] == "userBNumber"
    assert "premium-rate" in form.json["error"]


def test_mobile_and_us_numbers_still_pair(client, api_headers):
    for a, b in ((A, "+447400123456"), ("+14155550100", "+12025550123")):
        resp = client.post("/api/chats", json={"a": a, "b": b}, headers=api_headers)
        assert resp.status_code == 201, resp.json


class TestAllowFixedLine:
    @pytest.fixture
    def app_overrides(self):
        return {"ALLOW_FIXED_LINE": True}

    def test_a_landline_pairs_when_allowed(self, client, api_headers):
        resp = client.post("/api/chats", json={"a": A, "b": LANDLINE}, headers=api_headers)
        assert resp.status_code == 201, resp.json
        assert resp.json["b"] == "+442079460000"
        premium = client.post("/api/chats", json={"a": B, "b": "+19005550123"}, headers=api_headers)
        assert premium.status_code == 400 and premium.json["field"] == "b"


def test_introductions_keep_the_label_as_written(client, api_headers, gateway):
    body = {"a": A, "b": B, "a_label": "Customer Ann", "b_label": "Driver Bob"}
    chat = client.post("/api/chats", json=body, headers=api_headers).json
    drain_once()
    texts = {s["to"]: s["text"] for s in gateway.sent}
    assert "your Driver Bob" in texts[A] and "driver bob" not in texts[A]
    assert "your Customer Ann" in texts[B]
    assert chat["a_label"] == "Customer Ann"
    # a label that already says "your ..." is used as it is
    again = {"a": "+447700900333", "b": "+447700900444", "b_label": "Your usual Driver"}
    client.post("/api/chats", json=again, headers=api_headers)
    drain_once()
    assert any("with Your usual Driver" in s["text"] for s in gateway.sent)
