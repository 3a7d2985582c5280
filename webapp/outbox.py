"""The outbox: queued outbound messages are claimed, sent through the gateway, and settled.

`drain_once()` sends what is due now (tests call it directly); `Worker` runs it in the background, woken at
once by `wake()` after a commit and polling as a fallback.

Message states (outbound): queued -> sending -> submitted -> delivered | failed | expired | rejected, plus
`unconfirmed` for a send whose outcome we do not know. The guarantees:

- Retries: what is retryable (status 1/5/10, HTTP 429/5xx, connection refused) is re-queued with exponential
  backoff and full jitter (OUTBOX_RETRY_BASE_SECONDS, OUTBOX_RETRY_CAP_SECONDS), up to OUTBOX_MAX_ATTEMPTS;
  what is not (bad number, barred, bad credentials, ...) fails at once with its reason.
- Ambiguous sends: a request that may have reached Vonage (read timeout, connection dropped after sending,
  unparseable answer, or a worker killed between claim and settle) is NOT resent blindly. It becomes
  `unconfirmed` and waits OUTBOX_RECONCILE_SECONDS for a delivery receipt carrying its `client-ref`
  ("m<id>"): if one arrives, Vonage had it and it is `submitted`; if none arrives, it is re-queued. That is
  at-least-once with reconciliation: a duplicate needs Vonage to accept the message and then send no
  receipt at all within the window. OUTBOX_RECONCILE_SECONDS=0 chooses at-most-once instead: the message stays
  `unconfirmed` and the operator decides (services.outbound.resend_message).
- Order: a message is claimed only when no earlier message to the same recipient is queued, sending or
  awaiting reconciliation, so texts to one person go out in the order they arrived, retries included.
- Rate: every HTTP request to Vonage takes a slot from the rate limiter (VONAGE_MAX_SENDS_PER_SECOND in any
  1 s window), and OUTBOX_CONCURRENCY sends run in parallel so the limit is used under a backlog.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import timedelta

from flask import Flask, current_app
from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import aliased

from . import live
from .database import begin_write
from .extensions import db
from .gateway import SendResult, SmsGateway
from .models import Message, SmsPart, utcnow
from .proxy import mask_for_log
from .ratelimit import RateLimiter, acquire, build_rate_limiter

log = logging.getLogger(__name__)

_wake = threading.Event()


def wake() -> None:
    """Tell the worker in this process that work was queued."""
    _wake.set()


def gateway() -> SmsGateway:
    return current_app.extensions["sms_gateway"]


def rate_limiter() -> RateLimiter:
    """This app's send-rate limiter, built on first use from the configuration."""
    ext = current_app.extensions
    if "rate_limiter" not in ext:
        cfg = current_app.config
        ext["rate_limiter"] = build_rate_limiter(
            float(cfg["VONAGE_MAX_SENDS_PER_SECOND"]), cfg.get("RATE_LIMIT_REDIS_URL", "")
        )
    return ext["rate_limiter"]


def backoff(attempts: int, base: float = 1.0, cap: float = 300.0) -> float:
    """Seconds before retry number `attempts`: exponential with full jitter, at least base/2."""
    return random.uniform(0, min(cap, base * 2 ** max(attempts - 1, 0))) + base / 2


def _blocking_earlier():
    """SQL condition: an earlier message to the same recipient is still on its way out."""
    earlier = aliased(Message)
    return exists().where(
        earlier.to_number == Message.to_number,
        earlier.id < Message.id,
        earlier.direction == "out",
        or_(
            earlier.status.in_(("queued", "sending")),
            and_(earlier.status == "unconfirmed", earlier.next_attempt_at.is_not(None)),
        ),
    )


def claim(limit: int) -> list[int]:
    """Atomically move up to `limit` due messages from queued to sending; return their ids.

    Only the head of each recipient's queue is due (order per recipient). One UPDATE ... WHERE id IN
    (subquery) RETURNING works on both backends (shared/stack.md §5.4); on PostgreSQL the subquery takes FOR
    UPDATE SKIP LOCKED so several workers never claim one row.
    """
    begin_write()  # on SQLite: queue with this process's other writers, not in SQLite's sleeping busy handler
    now = utcnow()
    due = (
        select(Message.id)
        .where(Message.status == "queued", Message.next_attempt_at <= now, ~_blocking_earlier())
        .order_by(Message.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    ids = db.session.scalars(
        update(Message)
        .where(Message.id.in_(due), Message.status == "queued")
        .values(status="sending", claimed_at=now)
        .returning(Message.id)
        .execution_options(synchronize_session=False)
    ).all()
    db.session.commit()
    return sorted(ids)


@dataclass
class Settled:
    message_id: int
    chat_id: int | None
    status: str


def _await_receipt(msg: Message, why: str) -> None:
    """Park an ambiguous send until a receipt names it or the reconciliation window closes."""
    window = float(current_app.config["OUTBOX_RECONCILE_SECONDS"])
    msg.status = "unconfirmed"
    msg.claimed_at = None
    if window > 0:
        msg.next_attempt_at = utcnow() + timedelta(seconds=window)
        msg.error = f"{why}; waiting {window:g} s for a delivery receipt, then resending"
    else:
        msg.next_attempt_at = None
        msg.error = f"{why}; may or may not have been sent: check, then resend or leave it"
    msg.error = msg.error[:255]


def settle(msg: Message, result: SendResult) -> str:
    """Record a send's outcome on the message (inside the caller's transaction)."""
    from .services.receipts import absorb_receipts, refresh_message_status

    cfg = current_app.config
    msg.attempts = (msg.attempts or 0) + 1
    msg.claimed_at = None
    known = {p.vonage_id for p in msg.parts}
    for vonage_id in result.message_ids:
        if vonage_id not in known:
            msg.parts.append(SmsPart(vonage_id=vonage_id))
            known.add(vonage_id)
    if result.ok:
        msg.meta = {**(msg.meta or {}), "parts_expected": len(result.message_ids) or 1}
    db.session.flush()
    # A receipt may already be here: it raced this answer, or it names an ambiguous send by client-ref.
    parts = absorb_receipts(msg, result.message_ids)
    if result.ok or (result.ambiguous and parts):
        msg.next_attempt_at = None
        return refresh_message_status(msg, "submitted")
    msg.error = (result.error or "send failed")[:255]
    if result.retryable and msg.attempts < cfg["OUTBOX_MAX_ATTEMPTS"]:
        msg.status = "queued"
        delay = backoff(msg.attempts, cfg["OUTBOX_RETRY_BASE_SECONDS"], cfg["OUTBOX_RETRY_CAP_SECONDS"])
        msg.next_attempt_at = utcnow() + timedelta(seconds=delay)
    elif result.ambiguous:
        _await_receipt(msg, result.error or "no answer from Vonage")
    else:
        msg.status = "failed"
        msg.next_attempt_at = None
        if result.retryable:
            msg.error = f"gave up after {msg.attempts} attempts: {msg.error}"[:255]
    return msg.status


@dataclass(frozen=True)
class _Job:
    message_id: int
    to: str
    sender: str
    text: str
    client_ref: str
    chat_id: int | None = None


def _send(gw: SmsGateway, limiter: RateLimiter, job: _Job) -> SendResult:
    acquire(limiter)
    try:
        return gw.send(to=job.to, sender=job.sender, text=job.text, client_ref=job.client_ref)
    except Exception as exc:  # a gateway must not raise; if it does, we cannot know whether it sent
        log.exception("gateway raised while sending message %d", job.message_id)
        return SendResult(False, ambiguous=True, error=f"gateway error: {type(exc).__name__}")


def _settle_accepted(job: _Job, result: SendResult) -> Settled | None:
    """The common case in three statements: a first send that Vonage accepted, no receipt raced ahead of it.

    None (nothing written) when anything is unusual; `settle()` then handles it through the ORM.
    """
    from .models import Receipt
    from .services.receipts import client_ref

    m, parts, receipts = Message.__table__, SmsPart.__table__, Receipt.__table__
    if not result.ok or not result.message_ids:
        return None
    begin_write()
    conn = db.session.connection()
    early = conn.execute(
        select(receipts.c.id)
        .where(
            or_(receipts.c.client_ref == client_ref(job.message_id), receipts.c.vonage_id.in_(result.message_ids)),
            receipts.c.part_id.is_(None),
        )
        .limit(1)
    ).first()
    if early is not None:
        db.session.rollback()
        return None
    now = utcnow()
    updated = conn.execute(
        update(m)
        .where(m.c.id == job.message_id, m.c.status == "sending", m.c.attempts == 0, m.c.meta.is_(None))
        .values(status="submitted", attempts=1, claimed_at=None, error=None, next_attempt_at=None,
                meta={"parts_expected": len(result.message_ids)}, updated_at=now)
    ).rowcount
    if updated != 1:
        db.session.rollback()
        return None
    conn.execute(
        parts.insert(),
        [{"message_id": job.message_id, "vonage_id": v, "status": "submitted", "updated_at": now}
         for v in result.message_ids],
    )
    db.session.commit()
    log.info("message %d sent to %s", job.message_id, mask_for_log(job.to))
    live.message_status(job.chat_id, job.message_id, "submitted")
    return Settled(job.message_id, job.chat_id, "submitted")


def _settle_one(job: _Job, result: SendResult) -> Settled:
    if (fast := _settle_accepted(job, result)) is not None:
        return fast
    msg = db.session.get(Message, job.message_id)
    assert msg is not None
    status = settle(msg, result)
    db.session.commit()
    if result.ok:
        log.info("message %d sent to %s", job.message_id, mask_for_log(job.to))
    else:
        log.warning("message %d to %s: %s -> %s", job.message_id, mask_for_log(job.to), result.error, status)
    live.message_status(msg.chat_id, msg.id, status)
    return Settled(msg.id, msg.chat_id, status)


def _jobs(ids: list[int]) -> list[_Job]:
    from .services.receipts import client_ref

    rows = db.session.execute(
        select(Message.id, Message.to_number, Message.from_number, Message.text, Message.chat_id)
        .where(Message.id.in_(ids))
    ).all()
    db.session.commit()  # no transaction (or lock) is held during the HTTP calls
    jobs = [_Job(r[0], r[1], r[2], r[3] or "", client_ref(r[0]), r[4]) for r in rows]
    return sorted(jobs, key=lambda j: j.message_id)


def drain_once(limit: int = 50, executor: Executor | None = None) -> int:
    """Send every message due now, at most `limit` per claim. Returns how many sends were tried.

    With OUTBOX_CONCURRENCY > 1 the sends of one claim run in parallel threads (`executor`, or a temporary
    pool); settling stays in this thread, so only it touches the database session.
    """
    housekeeping()
    workers = max(int(current_app.config["OUTBOX_CONCURRENCY"]), 1)
    own = executor is None and workers > 1
    pool = ThreadPoolExecutor(workers, thread_name_prefix="outbox-send") if own else executor
    gw, limiter = gateway(), rate_limiter()
    done = 0
    try:
        if pool is None:
            while ids := claim(limit):
                for job in _jobs(ids):
                    _settle_one(job, _send(gw, limiter, job))
                    done += 1
            return done
        # Keep the pipeline full: claim more as sends finish, rather than batch by batch (waiting for a
        # batch's slowest send left the rate limit unused for a round trip per batch). Per-recipient order
        # holds because a recipient with a message still `sending` is not claimed again (_blocking_earlier).
        in_flight: dict[Future[SendResult], _Job] = {}
        while True:
            room = min(limit, 2 * workers - len(in_flight))
            if room > 0 and (ids := claim(room)):
                for job in _jobs(ids):
                    in_flight[pool.submit(_send, gw, limiter, job)] = job
            if not in_flight:
                break
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in sorted(finished, key=lambda f: in_flight[f].message_id):
                _settle_one(in_flight.pop(future), future.result())
                done += 1
    finally:
        if own and pool is not None:
            pool.shutdown(wait=True)
    return done


def recover_interrupted() -> int:
    """Messages left `sending` by a worker that died (lease expired): they may have reached Vonage.

    They become `unconfirmed` and are reconciled like any ambiguous send.
    """
    cfg = current_app.config
    lease = timedelta(seconds=cfg["OUTBOX_LEASE_SECONDS"])
    stale = db.session.scalars(
        select(Message)
        .where(Message.status == "sending", Message.claimed_at < utcnow() - lease)
        .with_for_update(skip_locked=True)
    ).all()
    for msg in stale:
        _await_receipt(msg, "interrupted while sending (worker stopped)")
    db.session.commit()
    for msg in stale:
        log.warning("message %d was interrupted mid-send; reconciling", msg.id)
        live.message_status(msg.chat_id, msg.id, msg.status)
    return len(stale)


def reconcile_due() -> int:
    """Unconfirmed messages whose window closed: settled by a receipt if one came, else re-queued."""
    from .services.receipts import absorb_receipts, refresh_message_status

    due = db.session.scalars(
        select(Message)
        .where(Message.status == "unconfirmed", Message.next_attempt_at <= utcnow())
        .with_for_update(skip_locked=True)
    ).all()
    changed: list[Message] = []
    for msg in due:
        if absorb_receipts(msg):
            msg.next_attempt_at = None
            refresh_message_status(msg, "submitted")
        else:
            msg.status = "queued"
            msg.next_attempt_at = utcnow()
            msg.error = "no delivery receipt arrived for an unanswered send: resending"
        changed.append(msg)
    db.session.commit()
    for msg in changed:
        live.message_status(msg.chat_id, msg.id, msg.status)
    return len(changed)


def housekeeping() -> None:
    """Periodic duties: recover interrupted sends, close reconciliation windows, flush stale multipart."""
    from .services.inbound import flush_expired_parts

    recover_interrupted()
    reconcile_due()
    flush_expired_parts()


class Worker:
    """Background sender for one process."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        workers = max(int(self.app.config["OUTBOX_CONCURRENCY"]), 1)
        if workers > 1:
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="outbox-send")
        self.thread = threading.Thread(target=self.run, name="outbox-worker", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        _wake.set()
        if self.thread:
            self.thread.join(timeout=10)
        if self._pool:
            self._pool.shutdown(wait=False)

    def run(self, drain: Callable[..., int] = drain_once) -> None:
        poll = self.app.config["OUTBOX_POLL_SECONDS"]
        while not self._stop.is_set():
            try:
                with self.app.app_context():
                    drain(executor=self._pool)
            except Exception:
                log.exception("outbox: drain failed; retrying shortly")
                self._stop.wait(poll)
            _wake.wait(timeout=poll)
            _wake.clear()
