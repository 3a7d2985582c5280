"""Auto-replies at our cost are capped: AUTO_REPLY_MAX_PER_HOUR overall (default 60) and only to countries in
AUTO_REPLY_COUNTRIES (default: the countries of the pool's numbers), never to premium-rate or service numbers.

Repro from the issue: 1,500 webhooks from random senders produced 1,505 auto-replies, including to premium-rate
(+1 900) and satellite (+882) numbers.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.conftest import PROXIES
from webapp.extensions import db
from webapp.models import Message
from webapp.services.autoreply import refusal

PROXY = PROXIES[0]


def text_from(client, sender: str, mid: str):
    resp = client.post(
        "/webhooks/inbound-sms", data={"msisdn": sender.lstrip("+"), "to": PROXY.lstrip("+"), "text": "hi?",
                                       "messageId": mid},
    )
    assert resp.status_code == 204, resp.get_data(as_text=True)


def auto_replies(to: str | None = None) -> int:
    query = select(func.count()).select_from(Message).where(Message.kind == "auto_reply")
    if to:
        query = query.where(Message.to_number == to)
    return db.session.scalar(query)


def test_by_default_at_most_60_auto_replies_go_out_in_an_hour(app, client):
    assert app.config["AUTO_REPLY_MAX_PER_HOUR"] == 60
    for i in range(75):
        text_from(client, f"+4479000{i:05d}", f"R-{i}")
    assert auto_replies() == 60
    # every text was stored as unrouted all the same
    unrouted = select(func.count()).select_from(Message).where(Message.status == "unrouted")
    assert db.session.scalar(unrouted) == 75


@pytest.mark.parametrize("app_overrides", [{"AUTO_REPLY_MAX_PER_HOUR": 3}])
def test_the_cap_is_a_sliding_hour(app, client):
    for i in range(5):
        text_from(client, f"+4479000{i:05d}", f"A-{i}")
    assert auto_replies() == 3
    for msg in db.session.scalars(select(Message)):  # an hour passes
        msg.created_at -= timedelta(minutes=61)
    db.session.commit()
    for i in range(5, 10):
        text_from(client, f"+4479000{i:05d}", f"B-{i}")
    assert auto_replies() == 6


@pytest.mark.parametrize("app_overrides", [{"AUTO_REPLY_MAX_PER_HOUR": 0}])
def test_a_cap_of_zero_sends_none(app, client):
    text_from(client, "+447900000001", "Z-1")
    assert auto_replies() == 0


def test_by_default_only_the_pools_countries_get_auto_replies(app, client):
    text_from(client, "+447900000001", "GB-1")  # the pool's numbers are British
    text_from(client, "+12025550123", "US-1")
    text_from(client, "+882123456789", "SAT-1")
    text_from(client, "+19005550123", "PREMIUM-1")
    assert auto_replies("+447900000001") == 1
    assert auto_replies() == 1


@pytest.mark.parametrize("app_overrides", [{"AUTO_REPLY_COUNTRIES": "US, gb"}])
def test_auto_reply_countries_widens_it_but_never_to_premium_numbers(app, client):
    text_from(client, "+447900000001", "GB-1")
    text_from(client, "+12025550123", "US-1")
    text_from(client, "+19005550123", "PREMIUM-1")  # +1 900: premium rate, in the US
    text_from(client, "+18005550123", "FREE-1")  # toll-free
    text_from(client, "+33612345678", "FR-1")
    assert auto_replies("+12025550123") == 1 and auto_replies("+447900000001") == 1
    assert auto_replies() == 2


def test_refusal_is_pure_and_names_why():
    assert refusal("+447900000001", {"GB"}) is None
    assert "premium" in refusal("+19005550123", {"US"})
    assert "AUTO_REPLY_COUNTRIES" in refusal("+882123456789", {"GB", "US"})
    assert "AUTO_REPLY_COUNTRIES" in refusal("+33612345678", {"GB"})


def test_one_per_sender_per_interval_still_holds(app, client):
    text_from(client, "+447900000001", "S-1")
    text_from(client, "+447900000001", "S-2")
    assert auto_replies() == 1
