"""Retention: RETENTION_DAYS, the daily job, `flask retention purge [--dry-run]`, "(removed after N days)"."""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from tests.conftest import PROXIES
from webapp.extensions import db
from webapp.jobs import run_once
from webapp.models import AuditEvent, Chat, HeldPart, Message, utcnow

from .conftest import STRANGER, A, B, C, D, bulk_history, plan


def ended_days_ago(api, chat_id: int, days: float) -> None:
    api("post", f"/api/chats/{chat_id}/end")
    db.session.execute(update(Chat).where(Chat.id == chat_id).values(ended_at=utcnow() - timedelta(days=days)))
    db.session.commit()


def texts(chat_id: int | None) -> list[str]:
    db.session.expire_all()
    which = Message.chat_id.is_(None) if chat_id is None else Message.chat_id == chat_id
    return list(db.session.scalars(select(Message.text).where(which).order_by(Message.id)))


@pytest.fixture
def history(api, pair, sms, sent):
    """An old ended chat (40 days), a recent ended one (5 days), an active one, an old unrouted text."""
    old, recent, active = pair(A, B), pair(C, D), pair(A, "+447700900555")
    for chat, who in ((old, A), (recent, C), (active, A)):
        sms(who, chat["proxy_number"], f"secret of chat {chat['id']}")
    sms(B, old["proxy_number"], "part one ", **{"concat-ref": "9", "concat-total": "2", "concat-part": "1"})
    sms(B, old["proxy_number"], "part two", **{"concat-ref": "9", "concat-total": "2", "concat-part": "2"})
    sent()
    ended_days_ago(api, old["id"], 40)
    ended_days_ago(api, recent["id"], 5)
    sms(STRANGER, PROXIES[2], "who is this?")
    db.session.execute(
        update(Message).where(Message.chat_id.is_(None)).values(created_at=utcnow() - timedelta(days=40))
    )
    db.session.commit()
    return {"old": old["id"], "recent": recent["id"], "active": active["id"]}


@pytest.mark.config(RETENTION_DAYS=30)
def test_the_daily_job_clears_old_texts_and_keeps_everything_else(app, api, history):
    old, recent, active = history["old"], history["recent"], history["active"]
    before = api("get", f"/api/chats/{old}").json["messages"]
    assert run_once(app, ["purge-old-texts"]) == {"purge-old-texts": True}
    after = api("get", f"/api/chats/{old}").json["messages"]
    assert {m["text"] for m in after} == {"(removed after 30 days)"}
    # everything but the text stays: ids, kinds, sides, states, times
    strip = [{k: v for k, v in m.items() if k not in ("text", "updated_at")} for m in before]
    assert [{k: v for k, v in m.items() if k not in ("text", "updated_at")} for m in after] == strip
    chat = api("get", f"/api/chats/{old}").json
    assert chat["ended_reason"] == "api" and chat["a"] == A
    # the parts of the multipart text are cleared too
    parts = db.session.scalars(select(HeldPart.text).where(HeldPart.message_id.is_not(None)))
    assert set(parts) == {""}
    # recent and active chats are untouched; an old text outside chats is cleared
    assert f"secret of chat {recent}" in texts(recent)
    assert f"secret of chat {active}" in texts(active)
    chatless = texts(None)  # the stranger's text and its auto-reply
    assert len(chatless) == 2 and set(chatless) == {"(removed after 30 days)"}
    # the audit trail keeps every record, and has one for the purge
    actions = [e["action"] for e in api("get", "/api/audit?limit=500").json["events"]]
    assert actions[0] == "texts.purged" and actions.count("chat.created") == 3
    # a second run finds nothing more
    assert run_once(app, ["purge-old-texts"]) == {"purge-old-texts": True}
    assert [e["action"] for e in api("get", "/api/audit?limit=500").json["events"]].count("texts.purged") == 1


def test_retention_zero_keeps_texts_forever(app, api, history):
    assert app.config["RETENTION_DAYS"] == 0
    assert run_once(app, ["purge-old-texts"]) == {"purge-old-texts": True}
    assert f"secret of chat {history['old']}" in texts(history["old"])


@pytest.mark.config(RETENTION_DAYS=30)
def test_the_cli_dry_run_counts_and_changes_nothing_then_purges(app, api, history):
    runner = CliRunner()
    dry = runner.invoke(app.cli, ["retention", "purge", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    n_old = len(texts(history["old"]))
    n_chatless = len(texts(None))
    assert dry.output.strip() == (
        f"would clear {n_old} text(s) in 1 chat(s) ended more than 30 day(s) ago, "
        f"and {n_chatless} text(s) outside chats"
    )
    assert f"secret of chat {history['old']}" in texts(history["old"])
    real = runner.invoke(app.cli, ["retention", "purge"])
    assert real.exit_code == 0, real.output
    assert real.output.startswith(f"cleared {n_old} text(s) in 1 chat(s)")
    assert set(texts(history["old"])) == {"(removed after 30 days)"}
    assert db.session.scalar(select(AuditEvent.actor).where(AuditEvent.action == "texts.purged")) == "cli"
    # --days overrides: now the 5-day-old chat goes too
    again = runner.invoke(app.cli, ["retention", "purge", "--days", "2"])
    assert "in 1 chat(s)" in again.output
    assert set(texts(history["recent"])) == {"(removed after 2 days)"}


def test_the_cli_says_when_retention_is_off(app):
    out = CliRunner().invoke(app.cli, ["retention", "purge"])
    assert out.exit_code == 0 and "kept forever" in out.output


@pytest.mark.config(RETENTION_DAYS=30)
def test_purged_texts_show_on_the_dashboard_and_in_the_transcript(app, api, dispatcher, history):
    run_once(app, ["purge-old-texts"])
    page = dispatcher.get(f"/chats/{history['old']}").text
    assert "(removed after 30 days)" in page and "secret of chat" not in page
    csv_text = api("get", f"/api/chats/{history['old']}/transcript.csv").get_data(as_text=True)
    assert "(removed after 30 days)" in csv_text and "secret" not in csv_text


def test_old_texts_are_found_by_index(app, history):
    """The retention look-ups use their indexes among thousands of chats already purged, so a run costs
    what it clears, not the whole history."""
    bulk_history()
    cutoff = utcnow()
    queries = {
        "ix_chats_status_purged_ended": (
            "SELECT id FROM chats WHERE status = 'ended' AND purged_at IS NULL AND ended_at < :c "
            "ORDER BY ended_at LIMIT 500"
        ),
        "ix_messages_chatless_unpurged": (
            "SELECT id FROM messages WHERE chat_id IS NULL AND purged_at IS NULL AND created_at < :c "
            "ORDER BY created_at LIMIT 500"
        ),
    }
    for index, sql in queries.items():
        assert index in plan(sql, c=cutoff), plan(sql, c=cutoff)
