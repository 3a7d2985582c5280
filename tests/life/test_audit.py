"""The audit trail: every action by an operator or the API, recorded in the action's own transaction, at
`GET /api/audit` and on the Activity page; the chat page says who ended a chat."""

from __future__ import annotations

from datetime import datetime

from click.testing import CliRunner
from sqlalchemy import func, select

from webapp import outbox
from webapp.extensions import db
from webapp.models import AuditEvent, Message

from .conftest import A, B, C, D, htmx


def events(api, **query) -> list[dict]:
    resp = api("get", "/api/audit", query_string=query)
    assert resp.status_code == 200, resp.json
    return resp.json["events"]


def test_api_actions_are_recorded_newest_first(api, pair):
    chat = pair(A, B, reference="R-1")
    api("post", f"/api/chats/{chat['id']}/messages", json={"to": "a", "text": "hi"})
    api("post", f"/api/chats/{chat['id']}/end")
    listed = events(api)
    assert [(e["action"], e["actor"], e["chat_id"]) for e in listed] == [
        ("chat.ended", "api", chat["id"]),
        ("message.sent", "api", chat["id"]),
        ("chat.created", "api", chat["id"]),
    ]
    for e in listed:
        assert set(e) == {"id", "at", "actor", "action", "chat_id", "detail"}
        assert datetime.fromisoformat(e["at"]).tzinfo is not None
    assert listed[0]["id"] > listed[1]["id"] > listed[2]["id"]
    assert "R-1" in listed[2]["detail"] and A not in listed[2]["detail"]  # numbers masked
    assert "api" in listed[0]["detail"]  # the reason


def test_limit_before_and_chat_filters(api, pair):
    first, second = pair(A, B), pair(C, D)
    api("post", f"/api/chats/{first['id']}/end")
    assert len(events(api, limit=2)) == 2
    newest = events(api, limit=1)[0]
    assert [e["id"] for e in events(api, before=newest["id"])] == [e["id"] for e in events(api)[1:]]
    assert {e["chat_id"] for e in events(api, chat_id=second["id"])} == {second["id"]}
    for bad in ("0", "1001", "-1", "x"):
        resp = api("get", "/api/audit", query_string={"limit": bad})
        assert resp.status_code == 400 and resp.json["field"] == "limit"


def test_dashboard_actions_name_the_operator(dispatcher, api, app, gateway):
    resp = htmx(dispatcher, "/chats", {"a": A, "b": B, "csrf_token": dispatcher.csrf})
    assert resp.status_code == 200
    chat_id = api("get", "/api/chats").json["chats"][0]["id"]
    htmx(dispatcher, f"/chats/{chat_id}/messages", {"to": "b", "text": "hello", "csrf_token": dispatcher.csrf})
    # a failed delivery, resent from the chat page
    outbox.drain_once()
    failed = db.session.scalar(select(Message).where(Message.kind == "operator"))
    failed.status, failed.error = "failed", "test: the handset is off"
    db.session.commit()
    dispatcher.post(f"/messages/{failed.id}/resend", data={"csrf_token": dispatcher.csrf, "chat_id": chat_id})
    dispatcher.post(f"/chats/{chat_id}/end", data={"csrf_token": dispatcher.csrf})
    listed = events(api)
    assert [(e["action"], e["actor"]) for e in listed] == [
        ("chat.ended", "operator:maria"),
        ("message.resent", "operator:maria"),
        ("message.sent", "operator:maria"),
        ("chat.created", "operator:maria"),
        ("operator.created", "system"),  # the fixture made maria's account without saying who
    ]
    header = dispatcher.get(f"/chats/{chat_id}/header").text
    assert "ended by dispatcher maria" in header
    assert api("get", f"/api/chats/{chat_id}").json["ended_by"] == "operator:maria"


def test_a_refused_action_leaves_no_record(api, pair):
    pair(A, B)
    before = events(api)
    assert api("post", "/api/chats", json={"a": A, "b": "nope"}).status_code == 400
    assert api("post", "/api/chats/1/messages", json={"to": "x", "text": "hi"}).status_code == 400
    api("post", "/api/chats/1/end")
    assert api("post", "/api/chats/1/end").status_code == 409
    after = events(api)
    assert len(after) == len(before) + 1  # the one end that happened


def test_numbers_added_and_removed_from_the_command_line(app, api):
    runner = CliRunner()
    cli = app.cli
    assert runner.invoke(cli, ["numbers", "add", "+447700900009"]).exit_code == 0
    assert runner.invoke(cli, ["numbers", "remove", "+447700900009"]).exit_code == 0
    assert runner.invoke(cli, ["numbers", "remove", "+447700900009"]).exit_code != 0  # refused: no record
    assert [(e["action"], e["actor"], e["detail"]) for e in events(api)] == [
        ("number.removed", "cli", "+447700900009"),
        ("number.added", "cli", "+447700900009"),
    ]


def test_operator_accounts_managed_from_the_command_line(app, api):
    runner = CliRunner()
    cli = app.cli
    # another admin first: the last enabled admin can be neither disabled nor demoted (services/operators.py)
    boss = runner.invoke(cli, ["operators", "create", "boss", "--admin", "--password-stdin"], input="boss-password\n")
    assert boss.exit_code == 0, boss.output
    ok = runner.invoke(cli, ["operators", "create", "tom", "--admin", "--password-stdin"], input="a-long-password\n")
    assert ok.exit_code == 0, ok.output
    for command in (["operators", "disable", "tom"], ["operators", "enable", "tom"], ["operators", "demote", "tom"]):
        done = runner.invoke(cli, command)
        assert done.exit_code == 0, done.output
    reset = runner.invoke(cli, ["operators", "reset-password", "tom", "--password-stdin"], input="another-password\n")
    assert reset.exit_code == 0, reset.output
    assert runner.invoke(cli, ["operators", "create", "tom", "--password-stdin"], input="a-long-password\n").exit_code
    assert [(e["action"], e["actor"], e["detail"]) for e in events(api)] == [
        ("operator.password_reset", "cli", "tom"),
        ("operator.admin_changed", "cli", "tom: dispatcher"),
        ("operator.enabled", "cli", "tom"),
        ("operator.disabled", "cli", "tom"),
        ("operator.created", "cli", "tom (admin)"),
        ("operator.created", "cli", "boss (admin)"),
    ]  # the refused second create left no record; no record carries a password
    assert not any("password" in (e["detail"] or "") for e in events(api))


def test_the_activity_page_shows_the_trail(dispatcher, api, pair):
    chat = pair(A, B)
    api("post", f"/api/chats/{chat['id']}/end")
    page = dispatcher.get("/activity").text
    assert 'id="activity"' in page
    assert page.index('data-action="chat.ended"') < page.index('data-action="chat.created"')
    assert "the API" in page and f'href="/chats/{chat["id"]}"' in page
    assert db.session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action.like("chat.%"))
    ) == 2
