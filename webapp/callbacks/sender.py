"""Delivering one event to EVENTS_URL, and settling the answer, isolated per event.

- a 2xx answer within EVENTS_TIMEOUT_SECONDS (5 s): `delivered`; the lane moves on to its next event;
- anything else (another status, a timeout, a refused connection): the event stays at the head of its lane
  and is tried again after an exponential backoff with full jitter (EVENTS_RETRY_BASE_SECONDS doubling up to
  EVENTS_RETRY_CAP_SECONDS), until EVENTS_MAX_AGE_SECONDS (24 h) after it happened; then `failed` (given up)
  and the lane moves on. Every try carries the same body, so the same `id`; only the signature's `t` changes.

The HTTP request runs in the event sender's own threads with its own connections (never the outbox's threads,
locks or rate limiter), so a slow or failing receiver cannot delay a relay. A settle that raises is caught for
that event alone: a minimal fallback records the attempt and frees the lane; if even that fails, the lane's
lease runs out and it is tried again (at least once, never lost).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
from flask import current_app
from sqlalchemy import Connection, func, select, update

from ..database import begin_write
from ..extensions import db
from ..models import CallbackEvent, CallbackLane, clip, utcnow
from ..states import CallbackStatus
from . import signing

log = logging.getLogger(__name__)

_events = CallbackEvent.__table__
_lanes = CallbackLane.__table__
USER_AGENT = "sms-proxy-events/1"


@dataclass(frozen=True)
class Delivery:
    """One event a sender is about to post: everything it needs, so no ORM object crosses threads."""

    event_id: int
    public_id: str
    type: str
    created_at: datetime
    data: dict[str, Any]
    lane: str
    attempts: int  # before this one
    lease: datetime  # the lane's leased_until as this sender took it

    def body(self) -> bytes:
        """The exact bytes posted, the same on every try."""
        payload = {"id": self.public_id, "type": self.type, "created_at": self.created_at.isoformat(),
                   "data": self.data}
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Outcome:
    ok: bool
    error: str | None = None
    status_code: int | None = None
    seconds: float = 0.0


_local = threading.local()


def _http() -> requests.Session:
    """One keep-alive session per sending thread (a requests.Session is not shared between threads)."""
    session = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        session.headers["User-Agent"] = USER_AGENT
        _local.session = session
    return session


def post(url: str, secret: str, timeout: float, delivery: Delivery) -> Outcome:
    """POST one event, signed. Never raises."""
    body = delivery.body()
    headers = {
        "Content-Type": "application/json",
        signing.HEADER: signing.header_value(secret, body),
        "X-SMS-Proxy-Event-Id": delivery.public_id,
        "X-SMS-Proxy-Attempt": str(delivery.attempts + 1),
    }
    started = time.monotonic()
    try:
        with _http().post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False,
                          stream=True) as resp:
            code = resp.status_code
    except requests.Timeout:
        return Outcome(False, f"no answer within {timeout:g} s", None, time.monotonic() - started)
    except requests.ConnectionError as exc:
        return Outcome(False, f"connection failed ({type(exc).__name__})", None, time.monotonic() - started)
    except Exception as exc:  # an unexpected error belongs to this event only
        return Outcome(False, f"delivery error ({type(exc).__name__})", None, time.monotonic() - started)
    elapsed = time.monotonic() - started
    if 200 <= code < 300:
        return Outcome(True, None, code, elapsed)
    return Outcome(False, f"HTTP {code}", code, elapsed)


def backoff(attempts: int, base: float, cap: float) -> float:
    """Seconds before retry number `attempts`: exponential with full jitter, at least base/2."""
    return random.uniform(0, min(cap, base * 2 ** max(attempts - 1, 0))) + base / 2


# ------------------------------------------------------------------ settling


def lock_lane(conn: Connection, key: str) -> None:
    """Hold the lane row (PostgreSQL; SQLite's writer lock already does) against other senders, lease recovery
    and the purge while this settle releases it. Recording never takes this lock (record.py): an event that
    commits while the release below runs is found by `worker.reopen_stranded()`."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(_lanes.c.id).where(_lanes.c.key == key).with_for_update())


def head_due(key: str) -> Any:
    """When the lane's head (its oldest pending event) is due; NULL when nothing is pending."""
    return (
        select(_events.c.next_attempt_at)
        .where(_events.c.lane == key, _events.c.status == CallbackStatus.PENDING)
        .order_by(_events.c.id)
        .limit(1)
        .scalar_subquery()
    )


def release(conn: Connection, key: str, lease: datetime | None, **values: Any) -> int:
    """Free the lane (due at its next head) if this sender still holds it; with `values` for the lane."""
    cond = [_lanes.c.key == key]
    if lease is not None:
        cond.append(_lanes.c.leased_until == lease)
    return conn.execute(
        update(_lanes).where(*cond).values(due_at=head_due(key), leased_until=None, **values)
    ).rowcount


def _settle(d: Delivery, out: Outcome) -> str:
    cfg = current_app.config
    now = utcnow()
    begin_write()
    conn = db.session.connection()
    lock_lane(conn, d.lane)
    attempts = d.attempts + 1
    mine = (_events.c.id == d.event_id, _events.c.status == CallbackStatus.PENDING)
    if out.ok:
        status = CallbackStatus.DELIVERED
        conn.execute(update(_events).where(*mine).values(
            status=status, attempts=attempts, finished_at=now, last_error=None))
        lane = {"failing_since": None, "last_error": None}
    else:
        error = clip(CallbackEvent.last_error, out.error or "delivery failed")
        deadline = d.created_at + timedelta(seconds=float(cfg["EVENTS_MAX_AGE_SECONDS"]))
        if now >= deadline:
            status = CallbackStatus.FAILED
            hours = float(cfg["EVENTS_MAX_AGE_SECONDS"]) / 3600
            reason = clip(CallbackEvent.last_error, f"gave up after {attempts} attempts in {hours:g} h: {error}")
            conn.execute(update(_events).where(*mine).values(
                status=status, attempts=attempts, finished_at=now, last_error=reason))
            lane = {"failing_since": None, "last_error": error}
        else:
            status = CallbackStatus.PENDING
            delay = backoff(attempts, float(cfg["EVENTS_RETRY_BASE_SECONDS"]), float(cfg["EVENTS_RETRY_CAP_SECONDS"]))
            due = min(now + timedelta(seconds=delay), deadline)
            conn.execute(update(_events).where(*mine).values(
                attempts=attempts, next_attempt_at=due, last_error=error))
            lane = {"failing_since": func.coalesce(_lanes.c.failing_since, now), "last_error": error}
    release(conn, d.lane, d.lease, **lane)
    db.session.commit()
    return status


def _fallback(d: Delivery, out: Outcome, cause: Exception) -> str:
    """After a settle raised: count the attempt with a reason and free the lane (retried after a backoff)."""
    db.session.rollback()
    cfg = current_app.config
    why = f"could not record the delivery ({type(cause).__name__})"
    due = utcnow() + timedelta(seconds=backoff(d.attempts + 1, float(cfg["EVENTS_RETRY_BASE_SECONDS"]),
                                               float(cfg["EVENTS_RETRY_CAP_SECONDS"])))
    try:
        begin_write()
        conn = db.session.connection()
        lock_lane(conn, d.lane)
        values: dict[str, Any] = {"attempts": d.attempts + 1, "last_error": clip(CallbackEvent.last_error, why)}
        if out.ok:
            values.update(status=CallbackStatus.DELIVERED, finished_at=utcnow())
        else:
            values["next_attempt_at"] = due
        conn.execute(update(_events).where(_events.c.id == d.event_id,
                                           _events.c.status == CallbackStatus.PENDING).values(**values))
        release(conn, d.lane, d.lease)
        db.session.commit()
        return values.get("status", CallbackStatus.PENDING)
    except Exception as exc:
        db.session.rollback()
        log.error("event %s: fallback settle failed too (%s); its lane's lease will run out and it is tried "
                  "again", d.public_id, type(exc).__name__)
        return CallbackStatus.PENDING


def settle(d: Delivery, out: Outcome) -> str:
    """Record one delivery attempt and free its lane. Never raises; returns the event's new state."""
    try:
        status = _settle(d, out)
    except Exception as exc:
        log.error("event %s: settle failed (%s); recording a minimal outcome", d.public_id, type(exc).__name__)
        log.debug("settle failure of event %s", d.public_id, exc_info=True)
        status = _fallback(d, out, exc)
    if out.ok:
        log.info("event %s (%s) delivered in %.0f ms", d.public_id, d.type, out.seconds * 1000)
    else:
        log.warning("event %s (%s) attempt %d: %s -> %s", d.public_id, d.type, d.attempts + 1, out.error, status)
    return status
