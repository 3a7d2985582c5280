"""The event sender: claims due lanes (one per chat), posts their heads in its own threads, settles each.

`drain_once()` posts what is due now (tests call it directly); `EventSender` runs it in a background thread,
woken at once when events are recorded (wakeups.EVENTS, after the commit) and otherwise when the next lane
is due. Claiming takes due lanes by index, never scans events, so its cost does not grow with the backlog.
A lane whose lease ran out (its sender died mid-post) is freed by `recover_leases()`, which this loop runs
every few seconds; its head is then posted again, with the same id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from datetime import timedelta

from flask import Flask, current_app
from sqlalchemy import and_, func, or_, select, update

from .. import wakeups
from ..database import begin_write
from ..extensions import db
from ..lanes import take_due
from ..models import CallbackEvent, CallbackLane, clip, utcnow
from ..states import CallbackStatus
from .record import enabled, open_statement
from .sender import Delivery, Outcome, head_due, lock_lane, post, release, settle

log = logging.getLogger(__name__)

_events = CallbackEvent.__table__
_lanes = CallbackLane.__table__
BATCH = 200


def lease_seconds() -> float:
    """How long a sender holds a lane: longer than one post may take (its timeout), plus a margin."""
    return float(current_app.config["EVENTS_TIMEOUT_SECONDS"]) + 5.0


def _unreadable(conn, event_id: int, key: str, exc: Exception) -> None:
    """An event whose stored row cannot be read is given up with the reason; its lane moves on."""
    log.error("event row %d cannot be read (%s); marked failed", event_id, type(exc).__name__)
    conn.execute(update(_events).where(_events.c.id == event_id).values(
        status=CallbackStatus.FAILED, finished_at=utcnow(),
        last_error=clip(CallbackEvent.last_error, f"unreadable event ({type(exc).__name__})")))


def claim(limit: int) -> list[Delivery]:
    """Take up to `limit` due lanes and return their heads to post, oldest due first."""
    begin_write()
    conn = db.session.connection()
    now = utcnow()
    lease = now + timedelta(seconds=lease_seconds())
    keys = take_due(conn, _lanes, _lanes.c.key, now, lease, limit)
    found: list[Delivery] = []
    for key in keys:
        head_id = conn.execute(
            select(_events.c.id)
            .where(_events.c.lane == key, _events.c.status == CallbackStatus.PENDING)
            .order_by(_events.c.id)
            .limit(1)
        ).scalar()
        if head_id is not None:
            try:
                head = conn.execute(select(_events).where(_events.c.id == head_id)).one()
                if head.next_attempt_at <= now:
                    found.append(Delivery(head.id, head.public_id, head.type, head.created_at, dict(head.data),
                                          key, head.attempts, lease))
                    continue
            except Exception as exc:  # one bad row must not stop the claim
                _unreadable(conn, head_id, key, exc)
        release(conn, key, lease)  # nothing to post now after all: back to its head's due time
    db.session.commit()
    return found


def next_due_in() -> float | None:
    """Seconds until the earliest lane is due (0 if one is due now); None when no lane is waiting."""
    earliest = db.session.scalar(select(func.min(_lanes.c.due_at)))
    db.session.rollback()
    if earliest is None:
        return None
    return max((earliest - utcnow()).total_seconds(), 0.0)


def recover_leases() -> int:
    """Free lanes whose lease ran out (a sender died or hung mid-post); their heads are posted again."""
    now = utcnow()
    keys = list(db.session.scalars(
        select(_lanes.c.key).where(_lanes.c.leased_until < now).order_by(_lanes.c.leased_until).limit(BATCH)))
    db.session.rollback()
    freed = 0
    for key in keys:
        try:
            begin_write()
            conn = db.session.connection()
            lock_lane(conn, key)
            freed += conn.execute(
                update(_lanes).where(_lanes.c.key == key, _lanes.c.leased_until < utcnow())
                .values(due_at=head_due(key), leased_until=None)
            ).rowcount
            db.session.commit()
        except Exception as exc:
            db.session.rollback()
            log.error("freeing event lane %s failed (%s)", key, type(exc).__name__)
    if freed:
        log.warning("%d event lane(s) freed after their sender stopped mid-post", freed)
    return freed


def _ring(_future: Future[Outcome]) -> None:
    wakeups.EVENTS.ring()


STRANDED_WINDOW = 120.0  # seconds: far longer than a transaction that records an event stays open


def reopen_stranded() -> int:
    """Make due the lanes that have a recent pending event but are idle or missing; returns how many.

    On PostgreSQL recording never waits for the sender (record.py), so a sender releasing a lane as idle in the
    instant an event for it commits leaves that event waiting with nobody to send it; so does an hourly purge
    deleting the lane at that instant. Looking at the last two minutes of pending events (by index) finds
    these, whatever the backlog; normally it finds nothing and writes nothing.
    """
    since = utcnow() - timedelta(seconds=STRANDED_WINDOW)
    recent = (
        select(_events.c.lane)
        .where(_events.c.status == CallbackStatus.PENDING, _events.c.created_at >= since)
        .distinct()
        .subquery()
    )
    idle = (
        select(recent.c.lane)
        .select_from(recent.outerjoin(_lanes, _lanes.c.key == recent.c.lane))
        .where(or_(_lanes.c.id.is_(None), and_(_lanes.c.due_at.is_(None), _lanes.c.leased_until.is_(None))))
    )
    keys = list(db.session.scalars(idle.limit(BATCH)))
    db.session.rollback()
    for key in keys:
        try:
            begin_write()
            conn = db.session.connection()
            conn.execute(open_statement(conn.dialect.name), {"key": key, "due_at": utcnow()})
            db.session.commit()
        except Exception as exc:
            db.session.rollback()
            log.error("reopening event lane %s failed (%s)", key, type(exc).__name__)
    if keys:
        log.warning("%d event lane(s) had pending events but nobody to send them; made due", len(keys))
    return len(keys)


def drain_once(limit: int = 50, executor: Executor | None = None, budget: float = 10.0) -> int:
    """Post the events due now, claiming more for at most `budget` seconds. Returns how many posts were tried.

    Posts run in parallel threads (`executor`, or a temporary pool of EVENTS_CONCURRENCY); more is claimed as
    each finishes; settling stays in this thread. A lane is held while its post is in flight, so one chat's
    events never overlap or overtake each other. The budget returns control to the loop (lease recovery, stop)
    even while a failing receiver keeps lanes due.
    """
    if not enabled():
        return 0
    cfg = current_app.config
    url, secret, timeout = cfg["EVENTS_URL"], cfg["EVENTS_SECRET"], float(cfg["EVENTS_TIMEOUT_SECONDS"])
    workers = max(int(cfg["EVENTS_CONCURRENCY"]), 1)
    own = executor is None
    pool = ThreadPoolExecutor(workers, thread_name_prefix="events-post") if own else executor
    done = 0
    failure: Exception | None = None
    in_flight: dict[Future[Outcome], Delivery] = {}
    stop_claiming = time.monotonic() + budget
    try:
        while True:
            # no more in flight than posting threads: a claimed event is posted at once, so its lane's lease
            # (EVENTS_TIMEOUT_SECONDS + 5) never runs out while it waits for a thread
            room = min(limit, workers - len(in_flight))
            if failure is None and room > 0 and time.monotonic() < stop_claiming:
                try:
                    for d in claim(room):
                        future = pool.submit(post, url, secret, timeout, d)
                        future.add_done_callback(_ring)
                        in_flight[future] = d
                except Exception as exc:  # settle what is in flight, then let the loop back off
                    db.session.rollback()
                    failure = exc
            if not in_flight:
                break
            finished = [f for f in in_flight if f.done()]
            if not finished:
                # a post finished, or an event was recorded that a free slot could take (a slow receiver
                # must not keep the other chats' events waiting for its timeout)
                wakeups.EVENTS.wait(1.0)
                continue
            for future in sorted(finished, key=lambda f: in_flight[f].event_id):
                settle(in_flight.pop(future), future.result())
                done += 1
        if failure is not None:
            raise failure
    finally:
        if own:
            pool.shutdown(wait=True)
    return done


class EventSender:
    """Background sender of event callbacks for one process, apart from the outbox: its own thread, its own
    pool of posting threads and HTTP connections. Its loop logs every error, pauses, and goes on."""

    RECOVER_EVERY = 5.0

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    def start(self) -> bool:
        if not self.app.config.get("EVENTS_URL"):
            return False
        workers = max(int(self.app.config["EVENTS_CONCURRENCY"]), 1)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="events-post")
        self.thread = threading.Thread(target=self.run, name="events-sender", daemon=True)
        self.thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()
        wakeups.EVENTS.ring()
        if self.thread:
            self.thread.join(timeout=10)
        if self._pool:
            self._pool.shutdown(wait=False)

    def run(self, drain: Callable[..., int] = drain_once) -> None:
        poll = float(self.app.config["EVENTS_POLL_SECONDS"])
        recovered_at = 0.0
        while not self._stop.is_set():
            pause = poll
            try:
                with self.app.app_context():
                    if time.monotonic() - recovered_at >= self.RECOVER_EVERY:
                        recovered_at = time.monotonic()
                        recover_leases()
                        reopen_stranded()
                    drain(executor=self._pool)
                    due = next_due_in()
                    if due is not None:
                        pause = min(poll, max(due, 0.005))
            except Exception as exc:
                log.error("event sender: drain failed (%s); retrying in %.1f s", type(exc).__name__, poll)
                log.debug("event sender failure", exc_info=True)
                self._stop.wait(poll)
            wakeups.EVENTS.wait(pause)
