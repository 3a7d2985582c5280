"""Unrouted texts to action (issue 11): the chat a text belongs to, marking it handled, starting a chat from
it, and the nav badge that counts unhandled texts only. Server side, through the test client."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from sqlalchemy import func, select

from webapp import audit, outbox, services
from webapp.dashboard.auth import create_operator
from webapp.extensions import db, socketio
from webapp.models import AuditEvent, Chat, Message
from webapp.queries import count_unhandled_unrouted
from webapp.services.chats import validate_chat_request
from webapp.services.unrouted import last_chat_of

PASSWORD = "correct horse battery"
A, B, C = "+447700900111", "+447700900222", "+447700900333"
P1, P2 = "+447700900001", "+447700900002"
STRANGER = "+447700900999"
CSRF_RE = re.compile(r'name="csrf-token" content="([^"]+)"')


@pytest.fixture
def client(app: Flask):
    client = app.test_client()
    create_operator("maria", PASSWORD)
    token = CSRF_RE.search(client.get("/login").text).group(1)
    resp = client.post("/login", data={"name": "maria", "password": PASSWORD, "csrf_token": token})
    assert resp.status_code == 302
    client.csrf = CSRF_RE.search(client.get("/").text).group(1)
    return client


def pair(a: str = A, b: str = B, **labels) -> Chat:
    return services.start_chat(validate_chat_request(a, b, **labels), created_by="test")


def inbound(sender: str, proxy: str, text: str, mid: str) -> Message:
    result = services.receive_sms(
        {"msisdn": sender.lstrip("+"), "to": proxy.lstrip("+"), "text": text, "messageId": mid}
    )
    return db.session.get(Message, result.message_id)


def row_of(html: str, message_id: int) -> str:
    return re.search(rf'<tr id="unrouted-{message_id}".*?</tr>', html, re.S).group(0)


def badge(html: str) -> int:
    m = re.search(r'id="nav-unrouted" class="badge ?(hidden)?"[^>]*>(\d+)<', html)
    assert m, "no nav badge"
    return int(m.group(2))


def test_a_text_after_the_end_links_to_the_ended_chat(client):
    chat = pair(A, B, a_label="Customer", reference="ride-42")
    services.end_chat(chat.id)
    late = inbound(A, chat.proxy_number, "Hello? Are you still coming?", "late-1")
    assert late.status == "unrouted" and late.chat_id is None
    assert late.last_chat_id == chat.id
    row = row_of(client.get("/unrouted").text, late.id)
    assert f'href="/chats/{chat.id}"' in row and "ended" in row and "Customer" in row and "ride-42" in row


def test_the_link_is_the_last_chat_of_that_sender_on_that_number(client):
    first = pair(A, B)
    services.end_chat(first.id)
    second = pair(A, C)  # the same pair of (A, number) again, later
    assert second.proxy_number == first.proxy_number
    services.end_chat(second.id)
    assert last_chat_of(A, first.proxy_number) == second.id  # A is person a in both
    assert last_chat_of(B, first.proxy_number) == first.id
    assert last_chat_of(C, first.proxy_number) == second.id  # as person b
    other = P2 if first.proxy_number == P1 else P1
    assert last_chat_of(A, other) is None
    assert last_chat_of(STRANGER, first.proxy_number) is None


def test_a_party_texting_the_wrong_number_is_shown_in_their_active_chat(client):
    chat = pair(A, B)
    wrong = P2 if chat.proxy_number == P1 else P1
    msg = inbound(A, wrong, "Is this the driver?", "wrong-1")
    assert msg.status == "unrouted" and msg.last_chat_id is None  # never in a chat on that number
    row = row_of(client.get("/unrouted").text, msg.id)
    assert f'class="unrouted-active-chat">#{chat.id}</a>' in row


def test_a_stranger_is_listed_without_a_link(client):
    msg = inbound(STRANGER, P1, "Who is this?", "s-1")
    assert msg.last_chat_id is None
    row = row_of(client.get("/unrouted").text, msg.id)
    assert "Who is this?" in row and "/chats/" not in row and "Mark handled" in row


def test_mark_handled_records_who_and_when_audits_and_lowers_the_badge(app, client):
    live = socketio.test_client(app, flask_test_client=client)
    one = inbound(STRANGER, P1, "first", "s-1")
    inbound(STRANGER, P1, "second", "s-2")
    assert badge(client.get("/unrouted").text) == 2
    live.get_received()
    resp = client.post(
        f"/unrouted/{one.id}/handled",
        data={"csrf_token": client.csrf},
        headers={"HX-Request": "true"},
    )
    assert resp.status_code == 200 and 'id="unrouted-list"' in resp.text
    db.session.expire_all()
    one = db.session.get(Message, one.id)
    assert one.handled_by == "operator:maria" and one.handled_at is not None
    assert count_unhandled_unrouted() == 1
    html = client.get("/unrouted").text
    assert badge(html) == 1
    assert 'class="handled"' in row_of(html, one.id) and "Handled by maria" in row_of(html, one.id)
    [event] = [e for e in audit.recent(10) if e.action == "unrouted.handled"]
    assert event.actor == "operator:maria" and f"unrouted text {one.id}" in event.detail
    assert "first" not in event.detail and STRANGER not in event.detail  # masked number, never the text
    # the other dashboards are rung (a doorbell with the id, no text)
    rung = [e["args"][0] for e in live.get_received() if e["name"] == "unrouted_changed"]
    assert rung == [{"message_id": one.id, "change": "handled"}]
    # handled twice: the first mark stays, no second audit row
    again = client.post(f"/unrouted/{one.id}/handled", data={"csrf_token": client.csrf})
    assert again.status_code == 302
    assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "unrouted.handled")) == 1
    # the "not handled" view lists only the other one
    open_html = client.get("/unrouted?show=open").text
    assert "second" in open_html and f'id="unrouted-{one.id}"' not in open_html


def test_mark_handled_needs_csrf_and_an_unrouted_text(client):
    chat = pair(A, B)
    routed = inbound(A, chat.proxy_number, "routed", "r-1")
    assert client.post(f"/unrouted/{routed.id}/handled", data={"csrf_token": client.csrf}).status_code == 404
    assert client.post("/unrouted/9999/handled", data={"csrf_token": client.csrf}).status_code == 404
    msg = inbound(STRANGER, P1, "x", "s-1")
    assert client.post(f"/unrouted/{msg.id}/handled").status_code == 400  # no CSRF token
    assert count_unhandled_unrouted() == 1


def test_stop_from_a_stranger_needs_no_dispatcher(client):
    inbound(STRANGER, P1, "STOP", "s-stop")
    assert count_unhandled_unrouted() == 0
    assert "Handled automatically" in client.get("/unrouted").text


def test_start_a_chat_from_an_unrouted_text(app, client, gateway):
    chat = pair(A, B, a_label="Customer", b_label="Driver")
    services.end_chat(chat.id)
    late = inbound(A, chat.proxy_number, "Hello? Are you still coming?", "late-1")
    page = client.get(f"/unrouted/{late.id}/pair")
    assert page.status_code == 200
    assert "Hello? Are you still coming?" in page.text
    assert A not in page.text and "+44 7700 900111" not in page.text  # masked: the number stays on the server
    assert "+44 •••• ••01 11" in page.text
    assert 'value="Customer"' in page.text  # the label of the earlier chat
    # a bad person B: the error names the field, nothing is started
    bad = client.post(f"/unrouted/{late.id}/pair", data={"b": "020 7946 0000", "csrf_token": client.csrf})
    assert bad.status_code == 422 and "landline" in bad.text and 'id="pair-b-error"' in bad.text
    empty = client.post(f"/unrouted/{late.id}/pair", data={"b": "", "csrf_token": client.csrf})
    assert empty.status_code == 422 and 'id="pair-b-error"' in empty.text
    resp = client.post(
        f"/unrouted/{late.id}/pair",
        data={"b": C, "a_label": "Customer", "b_label": "New driver", "csrf_token": client.csrf},
    )
    assert resp.status_code == 302
    new = db.session.scalars(select(Chat).order_by(Chat.id.desc())).first()
    assert resp.headers["Location"].endswith(f"/chats/{new.id}")
    assert (new.a_number, new.b_number, new.created_by) == (A, C, "maria")
    db.session.expire_all()
    late = db.session.get(Message, late.id)
    assert late.handled_by == "operator:maria"
    assert any(f"started chat {new.id}" in (e.detail or "") for e in audit.recent(10))
    # neither introduction carries the other's real number
    outbox.drain_once()
    intros = [s for s in gateway.sent if s["to"] in (A, C) and "connected" in s["text"]]
    assert {s["to"] for s in intros} >= {A, C}
    assert all(A[1:] not in s["text"] and C[1:] not in s["text"] for s in intros)
    assert client.get("/unrouted/9999/pair").status_code == 404


def test_the_badge_counts_unhandled_texts_with_an_index(app):
    """The badge's count reads ix_messages_unhandled, not the messages table."""
    query = select(func.count()).select_from(Message).where(
        Message.chat_id.is_(None), Message.handled_at.is_(None), Message.direction == "in"
    )
    compiled = query.compile(db.engine, compile_kwargs={"literal_binds": True})
    explain = "EXPLAIN QUERY PLAN " if db.engine.dialect.name == "sqlite" else "EXPLAIN "
    with db.engine.connect() as conn:
        plan = " ".join(str(r) for r in conn.exec_driver_sql(explain + str(compiled)).all())
    assert "ix_messages_unhandled" in plan, plan
