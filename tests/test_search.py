"""Search (webapp/search.py) over the index (webapp/fulltext.py), on both backends.

What a dispatcher types finds the chat wherever it is (active or ended), by label, reference, number (full, in
any format, or its last digits), id, or by what someone wrote; and the database answers from its index, not
by reading every row.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest
from sqlalchemy import text, update

from webapp import fulltext, search, services
from webapp.extensions import db
from webapp.models import Message
from webapp.services.chats import validate_chat_request

ROOT = Path(__file__).resolve().parents[1]
A, B, C, D = "+447700900111", "+447700900222", "+447700900333", "+447700900444"


def pair(a: str, b: str, **labels):
    return services.start_chat(validate_chat_request(a, b, **labels), created_by="test")


def inbound(sender: str, proxy: str, body: str, mid: str) -> None:
    services.receive_sms({"msisdn": sender.lstrip("+"), "to": proxy.lstrip("+"), "text": body, "messageId": mid})


def found(q: str) -> list[int]:
    return [row.chat.id for row in search.find_chats(q).items]


@pytest.fixture
def chats(app):
    ride = pair(A, B, a_label="Customer", b_label="Driver Bob", reference="ride-42")
    parcel = pair(C, D, a_label="Courier", reference="PARCEL-5")
    inbound(A, ride.proxy_number, "Hello? Are you still coming?", "s-1")
    inbound(D, parcel.proxy_number, "Leave it with the neighbour", "s-2")
    services.end_chat(ride.id)
    return ride, parcel


def test_a_reference_finds_an_ended_chat_and_says_so(chats):
    ride, _parcel = chats
    result = search.find_chats("ride-42")
    assert [r.chat.id for r in result.items] == [ride.id]
    assert (result.total, result.active, result.ended) == (1, 0, 1)
    assert result.items[0].chat.status == "ended"


def test_words_match_labels_and_what_people_wrote(chats):
    ride, parcel = chats
    assert found("bob") == [ride.id]
    assert found("courier") == [parcel.id]
    assert found("still com") == [ride.id]  # every word, each as the start of a word
    assert found("neighbour") == [parcel.id]
    assert found("NEIGHBOUR") == [parcel.id]
    assert found("still neighbour") == []  # both words in one message (or in the labels), not spread
    row = search.find_chats("coming").items[0]
    assert row.hit is not None and row.hit.text == "Hello? Are you still coming?"


def test_only_what_people_and_dispatchers_wrote_is_searched(chats):
    _ride, parcel = chats
    # introductions and notices are templates ("your driver ..."): they would match every chat
    intro = db.session.scalars(db.select(Message).where(Message.kind == "intro")).first()
    word = next(w for w in intro.text.split() if len(w) > 3 and w.isalpha())
    assert search.find_chats(word).total <= 2  # labels may match; texts of notices do not add rows
    services.send_operator_message(parcel.id, "a", "Your parcel is at the depot", actor="operator:test")
    assert found("depot") == [parcel.id]


def test_numbers_full_national_or_last_digits_and_ids(chats):
    ride, parcel = chats
    assert found("+44 7700 900333") == [parcel.id]
    assert found("07700 900333") == [parcel.id]
    assert found("0333") == [parcel.id]
    assert found("900111") == [ride.id]
    assert found("7700 9003") == []  # digits from the middle are not "the last digits"
    assert set(found(ride.proxy_number)) >= {ride.id}  # a proxy number finds its chats
    assert found(f"#{parcel.id}") == [parcel.id]


def test_a_changed_text_is_searched_as_it_is_now(chats):
    _ride, parcel = chats
    db.session.execute(update(Message).where(Message.text.like("Leave it%")).values(text="(removed after 30 days)"))
    db.session.commit()
    assert found("neighbour") == []
    assert found("removed") == [parcel.id]


def test_nonsense_and_operators_are_just_text(chats):
    for q in ('"', "%", "*", "ride AND", "NOT ride", "a", "-", "ride:*", "(ride)", "é", "' OR 1=1 --",
              "²", "٣٤٥", "x²", "ǅ", "#", "# 12", "9" * 40, "+", "\x00"):
        search.find_chats(q)  # never an error
    assert found("%") == []


def test_results_page_active_first(app):
    made = [pair(f"+4477009005{i:02d}", f"+4477009006{i:02d}", reference=f"shift-{i}") for i in range(25)]
    for chat in made[:5]:
        services.end_chat(chat.id)
    first, second = search.find_chats("shift", 1), search.find_chats("shift", 2)
    assert (first.total, first.active, first.ended, first.pages) == (25, 20, 5, 2)
    assert all(r.chat.status == "active" for r in first.items)
    assert all(r.chat.status == "ended" for r in second.items)


def test_searching_logs_no_numbers(chats, caplog):
    with caplog.at_level(logging.DEBUG):
        search.find_chats("+44 7700 900333")
        search.find_chats("07700900333")
    assert "900333" not in caplog.text


def _plan(q: str) -> str:
    terms = search.parse(q)
    dialect = db.engine.dialect.name
    sql, params = search._candidates(terms, dialect)
    prefix = "EXPLAIN QUERY PLAN " if dialect == "sqlite" else "EXPLAIN "
    rows = db.session.execute(text(prefix + sql), params).all()
    return "\n".join(str(r[-1]) for r in rows)


def test_the_database_answers_from_the_index(chats):
    for q in ("bob", "neighbour", "0333"):
        plan = _plan(q)
        if db.engine.dialect.name == "sqlite":
            assert "VIRTUAL TABLE INDEX" in plan or "USING INDEX search_" in plan, plan
            assert "SCAN chats" not in plan and "SCAN messages" not in plan, plan
            assert "SCAN m\n" not in plan + "\n", plan
        else:
            db.session.execute(text("SET LOCAL enable_seqscan = off"))  # tiny tables: make the choice visible
            plan = _plan(q)
            assert "search_" in plan, plan


def test_start_rebuilds_a_search_index_someone_dropped(app, chats):
    ride, parcel = chats
    with db.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER search_messages_insert")
        else:
            conn.exec_driver_sql("DROP INDEX search_messages_text")
    inbound(B, parcel.proxy_number, "unrelated", "s-3")  # a stranger now; nothing to index anyway
    from webapp.database import migrate_schema

    assert migrate_schema(db.engine) == "current"
    with db.engine.connect() as conn:
        assert fulltext.present(conn) >= fulltext.expected(conn.dialect.name)
    assert found("neighbour") == [parcel.id]
    assert found("coming") == [ride.id]


@pytest.mark.sqlite_only
def test_the_migration_holds_the_same_statements_as_the_module():
    path = next((ROOT / "migrations" / "versions").glob("*_search_index.py"))
    spec = importlib.util.spec_from_file_location("search_index_migration", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.SQLITE_TABLES == fulltext.SQLITE_TABLES
    assert module.SQLITE_TRIGGERS == fulltext.SQLITE_TRIGGERS
    assert module.SQLITE_INDEXES == fulltext.SQLITE_INDEXES
    assert module.SQLITE_FILL == fulltext.SQLITE_FILL
    assert module.PG_INDEXES == fulltext.PG_INDEXES


@pytest.mark.sqlite_only
def test_parse():
    assert search.parse("07700 900123").suffixes == ["07700900123", "7700900123"]
    assert search.parse("0123").suffixes == ["0123"]
    assert search.parse("ride-42").words == ["ride", "42"] and search.parse("ride-42").suffixes == []
    assert search.parse("#42").chat_id == 42
    assert not search.parse("%")


def test_a_common_word_looks_at_the_newest_matches_only_and_says_so(app, monkeypatch):
    monkeypatch.setattr(search, "CAP", 3)
    made = [pair(f"+4477009007{i:02d}", f"+4477009008{i:02d}", reference=f"night-{i}") for i in range(5)]
    result = search.find_chats("night")
    assert result.capped and result.total == 3
    assert {r.chat.id for r in result.items} == {c.id for c in made[-3:]}  # the newest
    assert [r.chat.id for r in search.find_chats("night-4").items] == [made[4].id]  # "4" is a whole word
    assert not search.find_chats("night-4").capped
