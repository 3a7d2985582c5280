"""Group commit: concurrent callers share transactions, each gets its own result or error, nothing is lost."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select

from tests.conftest import PROXIES
from webapp.extensions import db
from webapp.groupcommit import GroupCommit
from webapp.models import Chat, Lane, Message
from webapp.services.relay import FastResult, Text, store_batch

A, B, STRANGER = "+447700900111", "+447700900222", "+447700900999"


def test_callers_get_their_own_results_and_errors_while_batches_form():
    batches: list[list[int]] = []

    def run(items: list[int]) -> list[int | BaseException]:
        batches.append(list(items))
        time.sleep(0.01)  # a commit under way: others queue meanwhile
        return [ValueError(f"bad {i}") if i % 7 == 0 else i * 10 for i in items]

    group: GroupCommit[int, int] = GroupCommit(run, max_batch=8)
    results: dict[int, object] = {}

    def call(i: int) -> None:
        try:
            results[i] = group.submit(i)
        except ValueError as exc:
            results[i] = str(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(1, 61)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {i: (f"bad {i}" if i % 7 == 0 else i * 10) for i in range(1, 61)}
    assert sorted(i for b in batches for i in b) == list(range(1, 61))  # each item written once
    assert max(len(b) for b in batches) <= 8
    assert len(batches) < 60  # they did share


def test_a_caller_alone_is_written_at_once():
    group: GroupCommit[str, str] = GroupCommit(lambda items: [i.upper() for i in items])
    assert group.submit("a") == "A"
    assert (group.batches, group.items) == (1, 1)


@pytest.fixture
def chat(app):
    from webapp.services.chats import start_chat, validate_chat_request

    return start_chat(validate_chat_request(A, B))


def test_a_batch_stores_routed_texts_dedupes_and_leaves_strangers_to_the_general_path(app, chat):
    proxy = chat.proxy_number
    items = [
        Text(A, proxy, "one", "P1"),
        Text(B, proxy, "two", "P2"),
        Text(A, proxy, "one again", "P1"),  # the same messageId later in the batch
        Text(STRANGER, proxy, "who?", "P3"),  # not in a chat here
        Text(A, proxy, "no id", None),
        Text(A, PROXIES[1], "wrong number", "P4"),  # A is not in a chat on that number
    ]
    out = store_batch(items)
    assert [type(o).__name__ for o in out] == ["FastResult", "FastResult", "FastResult", "NoneType", "FastResult",
                                              "NoneType"]
    assert out[2] == FastResult(None, chat.id)  # the duplicate
    again = store_batch([Text(B, proxy, "two", "P2")])
    assert again == [FastResult(None, chat.id)]  # stored before
    db.session.rollback()
    relays = db.session.scalars(select(Message).where(Message.kind == "relay").order_by(Message.id)).all()
    assert [(r.text, r.to_number) for r in relays] == [("one", B), ("two", A), ("no id", B)]
    assert [r.source_id for r in relays] == [out[0].message_id, out[1].message_id, out[4].message_id]
    assert db.session.get(Chat, chat.id).unread == 3
    lanes = {lane.recipient: lane.due_at for lane in db.session.scalars(select(Lane))}
    assert lanes[A] is not None and lanes[B] is not None
    assert db.session.scalar(select(func.count()).select_from(Message).where(Message.direction == "in")) == 3


def test_one_bad_text_in_a_batch_fails_only_itself(app, chat):
    proxy = chat.proxy_number
    out = store_batch([Text(A, proxy, "fine", "Q1"), Text(A, proxy, "x" * 10, "Q" * 65), Text(B, proxy, "ok", "Q3")])
    if db.engine.dialect.name == "sqlite":  # SQLite does not enforce VARCHAR lengths: all three are stored
        assert all(isinstance(o, FastResult) for o in out)
        return
    assert isinstance(out[0], FastResult) and isinstance(out[2], FastResult)
    assert isinstance(out[1], Exception)
    db.session.rollback()
    assert sorted(db.session.scalars(select(Message.text).where(Message.kind == "relay"))) == ["fine", "ok"]
