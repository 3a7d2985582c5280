"""Transcripts: `GET /api/chats/<id>/transcript.csv` and the Export button on the chat page."""

from __future__ import annotations

import csv
import io
from datetime import datetime

from .conftest import A, B

HEADER = ["time", "direction", "kind", "side", "label", "text", "status"]


def parse(body: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body)))


def test_one_row_per_message_with_a_header(api, pair, sms, sent):
    chat = pair(A, B, a_label="Customer", b_label="Driver")
    sms(A, chat["proxy_number"], 'Where are you? "Gate 2", please')
    api("post", f"/api/chats/{chat['id']}/messages", json={"to": "b", "text": "Customer is at gate 2"})
    sent()
    resp = api("get", f"/api/chats/{chat['id']}/transcript.csv")
    assert resp.status_code == 200
    assert resp.mimetype == "text/csv"
    assert f"chat-{chat['id']}-transcript.csv" in resp.headers["Content-Disposition"]
    rows = parse(resp.get_data(as_text=True))
    assert rows[0] == HEADER
    messages = api("get", f"/api/chats/{chat['id']}").json["messages"]
    assert len(rows) == 1 + len(messages)  # intro x2, the text, its relay, the dispatcher's message
    body = [dict(zip(HEADER, r, strict=True)) for r in rows[1:]]
    for row, message in zip(body, messages, strict=True):
        assert datetime.fromisoformat(row["time"]) == datetime.fromisoformat(message["created_at"])
        assert (row["direction"], row["kind"], row["side"], row["text"], row["status"]) == (
            message["direction"], message["kind"], message["side"], message["text"], message["status"]
        )
    text = next(r for r in body if r["direction"] == "inbound")
    assert (text["side"], text["label"], text["text"]) == ("a", "Customer", 'Where are you? "Gate 2", please')
    mine = next(r for r in body if r["kind"] == "operator")
    assert (mine["side"], mine["label"], mine["status"]) == ("b", "Driver", "submitted")


def test_unlabelled_parties_and_formula_like_texts(api, pair, sms):
    chat = pair(A, B)
    sms(B, chat["proxy_number"], "=HYPERLINK(\"http://evil\",\"click\")")
    rows = parse(api("get", f"/api/chats/{chat['id']}/transcript.csv").get_data(as_text=True))
    inbound = next(r for r in rows[1:] if r[1] == "inbound")
    assert inbound[4] == "Party B"
    assert inbound[5] == "'=HYPERLINK(\"http://evil\",\"click\")"  # a spreadsheet shows it, never runs it


def test_unknown_chat_and_missing_token(api, client):
    assert api("get", "/api/chats/42/transcript.csv").status_code == 404
    assert client.get("/api/chats/1/transcript.csv").status_code == 401


def test_the_export_button_downloads_the_same_csv(dispatcher, api, pair, sms):
    chat = pair(A, B)
    sms(A, chat["proxy_number"], "hello")
    page = dispatcher.get(f"/chats/{chat['id']}").text
    assert f'href="/chats/{chat["id"]}/transcript.csv"' in page and 'id="export-transcript"' in page
    resp = dispatcher.get(f"/chats/{chat['id']}/transcript.csv")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert parse(resp.get_data(as_text=True)) == parse(
        api("get", f"/api/chats/{chat['id']}/transcript.csv").get_data(as_text=True)
    )
    exports = [e for e in api("get", "/api/audit").json["events"] if e["action"] == "transcript.exported"]
    assert [e["actor"] for e in exports] == ["api", "operator:maria"]


def test_the_dashboard_export_needs_a_sign_in(client, pair):
    chat = pair(A, B)
    resp = client.get(f"/chats/{chat['id']}/transcript.csv")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
