"""Sending one claimed message through the gateway, and settling what Vonage answered.

The outcome of a send, by what the gateway reports (docs/delivery.md):
- accepted: `submitted`, with one part per Vonage message id; receipts move it on to delivered or failed;
- retryable (status 1/5/10, HTTP 429/5xx, connection refused before anything was sent): back to `queued`
  with exponential backoff and full jitter, up to OUTBOX_MAX_ATTEMPTS; the lane waits for it, so texts to
  that person keep their order;
- ambiguous (the request may have reached Vonage: read timeout, connection dropped after sending,
  unparseable answer): `unconfirmed`. It leaves the lane at once, so later texts to the same person keep
  flowing, and waits OUTBOX_RECONCILE_SECONDS (counted from its claim) for a receipt carrying its client-ref
  (recovery.reconcile_due); without one it is sent again and shown as resent;
- anything else (bad number, barred, credentials...): `failed` with its reason, at once.

A settle that raises (a database error, a gateway answer we cannot store) is caught for that message alone:
the message still gets a state and a reason through a minimal fallback, its lane is released, and the
worker goes on with the others. If even that fails, the lane's lease runs out and recovery takes over.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import Connection, bindparam, or_, select, update

from .. import events
from ..callbacks import record
from ..database import begin_write
from ..extensions import db
from ..gateway import SendResult, SmsGateway
from ..models import Message, Receipt, SmsPart, clip, utcnow
from ..proxy import mask_for_log
from ..ratelimit import RateLimiter, acquire, build_rate_limiter
from ..states import Status
from .claim import Batch, Job
from .delivery import absorb_receipts, note_attempt, refresh_message_status
from .queue import lock_lane, release_lane

log = logging.getLogger(__name__)

_messages, _parts, _receipts = Message.__table__, SmsPart.__table__, Receipt.__table__


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


def send(gw: SmsGateway, limiter: RateLimiter, job: Job) -> SendResult:
    """One HTTP request to the provider, under the rate limit. Never raises."""
    try:
        acquire(limiter)
        return gw.send(to=job.to, sender=job.sender, text=job.text, client_ref=job.client_ref)
    except Exception as exc:  # a gateway must not raise; if it does, we cannot know whether it sent
        log.error("gateway raised %s while sending message %d", type(exc).__name__, job.message_id)
        return SendResult(False, ambiguous=True, error=f"gateway error: {type(exc).__name__}")


# Outcome of one message of a batch: its send's result, or None when it was not sent (it stays queued).
Outcome = tuple[Job, SendResult | None]


QUICK_RETRIES = 2  # a throttle or a 5xx is usually gone in a few tens of milliseconds


def _send_with_quick_retries(gw: SmsGateway, limiter: RateLimiter, job: Job, base: float, max_attempts: int,
                             room: Callable[[], bool]) -> SendResult:
    """Send; on a retryable failure try again at once, twice, after a short jittered pause.

    The lane is held meanwhile, so the texts behind wait tens of milliseconds instead of a whole backoff
    round trip through the database. What still fails goes back to the queue with the usual backoff.
    """
    result = send(gw, limiter, job)
    tries = 1
    while result.retryable and tries <= QUICK_RETRIES and job.attempts + tries < max_attempts and room():
        time.sleep(backoff(tries, base / 4, base))
        result = send(gw, limiter, job)
        tries += 1
    result.tries = tries
    return result


def send_batch(gw: SmsGateway, limiter: RateLimiter, batch: Batch, timeout: float,
               retry_base: float = 0.2, max_attempts: int = 12) -> list[Outcome]:
    """Send a lane's messages one after another, oldest first. Never raises.

    A retryable failure (after its quick retries) stops the batch: what follows stays queued behind it, so
    order holds. A final failure or an ambiguous send does not (it has left the lane). Nothing is started
    that could outlast the lease.
    """

    def room() -> bool:
        return utcnow() + timedelta(seconds=timeout + 1) <= batch.lease_until

    outcomes: list[Outcome] = []
    stopped = False
    for job in batch.jobs:
        if not stopped and outcomes and not room():
            stopped = True  # the rest would risk outliving the lease: next claim
        if stopped:
            outcomes.append((job, None))
            continue
        result = _send_with_quick_retries(gw, limiter, job, retry_base, max_attempts, room)
        outcomes.append((job, result))
        stopped = result.retryable
    return outcomes


# ------------------------------------------------------------------ deciding the outcome


def _waiting_note(window: float) -> str:
    return f"; waiting {window:g} s for a delivery receipt, then resending"


def unconfirmed_reason(msg: Message) -> str:
    """Why an unconfirmed message is unconfirmed, without the note on what happens next."""
    window = float(current_app.config["OUTBOX_RECONCILE_SECONDS"])
    return (msg.error or "no answer from Vonage").removesuffix(_waiting_note(window))


def await_receipt(msg: Message, why: str, claimed_at: datetime | None) -> None:
    """Park an ambiguous send: it waits for a receipt until its claim time + OUTBOX_RECONCILE_SECONDS."""
    window = float(current_app.config["OUTBOX_RECONCILE_SECONDS"])
    msg.status = Status.UNCONFIRMED
    msg.claimed_at = None
    if window > 0:
        msg.next_attempt_at = (claimed_at or utcnow()) + timedelta(seconds=window)
        msg.error = clip(Message.error, f"{why}{_waiting_note(window)}")
    else:
        msg.next_attempt_at = None
        msg.error = clip(Message.error, f"{why}; may or may not have been sent: check, then resend or leave it")


def record_result(msg: Message, result: SendResult, claimed_at: datetime | None) -> str:
    """Record a send's outcome on the message (inside the caller's transaction); returns its new state."""
    cfg = current_app.config
    msg.attempts = (msg.attempts or 0) + result.tries
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
        return refresh_message_status(msg, Status.SUBMITTED)
    msg.error = clip(Message.error, result.error or "send failed")
    if result.retryable and msg.attempts < cfg["OUTBOX_MAX_ATTEMPTS"]:
        note_attempt(msg, Status.FAILED, msg.error, "retried")
        msg.status = Status.QUEUED
        delay = backoff(msg.attempts, cfg["OUTBOX_RETRY_BASE_SECONDS"], cfg["OUTBOX_RETRY_CAP_SECONDS"])
        msg.next_attempt_at = utcnow() + timedelta(seconds=delay)
    elif result.ambiguous:
        await_receipt(msg, result.error or "no answer from Vonage", claimed_at)
    else:
        msg.status = Status.FAILED
        msg.next_attempt_at = None
        if result.retryable:
            msg.error = clip(Message.error, f"gave up after {msg.attempts} attempts: {msg.error}")
    return msg.status


# ------------------------------------------------------------------ settling


def _still_ours(msg: Message, job: Job) -> bool:
    """The send is still this worker's: nobody recovered it (lease ran out) while it was in flight."""
    return msg.status == Status.SENDING and msg.claimed_at == job.claimed_at


class _Prebuilt:
    """Statements of the settle path, built once: building a statement costs more CPU than running it."""

    def __init__(self) -> None:
        m, r = _messages, _receipts
        self.early = select(r.c.client_ref, r.c.vonage_id).where(
            or_(r.c.client_ref.in_(bindparam("refs", expanding=True)),
                r.c.vonage_id.in_(bindparam("vids", expanding=True))),
            r.c.part_id.is_(None),
        )
        self.accept = (
            update(m)
            .where(m.c.id == bindparam("m_id"), m.c.status == Status.SENDING,
                   m.c.claimed_at == bindparam("m_claimed"), m.c.attempts == 0, m.c.meta.is_(None))
            .values(status=Status.SUBMITTED, attempts=bindparam("m_tries"), claimed_at=None, error=None,
                    next_attempt_at=None, meta=bindparam("m_meta", type_=m.c.meta.type),
                    updated_at=bindparam("m_now"))
        )
        self.parts = _parts.insert()
        self.unclaim = (
            update(m)
            .where(m.c.id == bindparam("m_id"), m.c.status == Status.SENDING,
                   m.c.claimed_at == bindparam("m_claimed"))
            .values(status=Status.QUEUED, claimed_at=None)
        )


_PREBUILT: _Prebuilt | None = None


def _prebuilt() -> _Prebuilt:
    global _PREBUILT
    if _PREBUILT is None:
        _PREBUILT = _Prebuilt()
    return _PREBUILT


def _receipts_ahead(conn: Connection, outcomes: list[Outcome]) -> set[int]:
    """Messages of the batch that a stored receipt already names (it raced the send's answer)."""
    accepted = [(job, result) for job, result in outcomes if result is not None and result.ok]
    if not accepted:
        return set()
    by_ref = {job.client_ref: job.message_id for job, _ in accepted}
    by_vid = {v: job.message_id for job, result in accepted for v in result.message_ids}
    rows = conn.execute(_prebuilt().early, {"refs": list(by_ref), "vids": list(by_vid) or [""]}).all()
    return {by_ref.get(ref) or by_vid.get(vid) for ref, vid in rows} - {None}


def _settle_accepted(conn: Connection, job: Job, result: SendResult, now: datetime) -> bool:
    """The common case in two prebuilt statements: a first send Vonage accepted, no receipt ahead of it.

    False (nothing written) when anything is unusual; `_settle_general` then handles it through the ORM.
    """
    if not result.ok or not result.message_ids:
        return False
    params = {"m_id": job.message_id, "m_claimed": job.claimed_at, "m_tries": result.tries,
              "m_meta": {"parts_expected": len(result.message_ids)}, "m_now": now}
    if conn.execute(_prebuilt().accept, params).rowcount != 1:
        return False
    conn.execute(
        _prebuilt().parts,
        [{"message_id": job.message_id, "vonage_id": v, "status": Status.SUBMITTED, "updated_at": now}
         for v in dict.fromkeys(result.message_ids)],
    )
    return True


def _settle_general(job: Job, result: SendResult) -> str:
    msg = db.session.get(Message, job.message_id, populate_existing=True)
    if msg is None:  # deleted meanwhile: nothing to record
        return "gone"
    if not _still_ours(msg, job) and msg.status not in (Status.UNCONFIRMED, Status.QUEUED):
        return msg.status  # settled by a receipt meanwhile
    status = record_result(msg, result, job.claimed_at)
    db.session.flush()
    record.message_settled(job.message_id, status, msg.error)  # delivered / failed: the backend's event
    return status


def _record(conn: Connection, job: Job, result: SendResult | None, raced: set[int], now: datetime) -> str:
    if result is None:  # not sent after all (the batch stopped before it): back to queued, untouched
        conn.execute(_prebuilt().unclaim, {"m_id": job.message_id, "m_claimed": job.claimed_at})
        return Status.QUEUED
    if job.message_id not in raced and _settle_accepted(conn, job, result, now):
        return Status.SUBMITTED
    return _settle_general(job, result)


def _settle_together(batch: Batch, outcomes: list[Outcome]) -> list[str]:
    """Every outcome of the batch and the lane's release in one transaction (one commit per batch)."""
    begin_write()
    conn = db.session.connection()
    lock_lane(conn, batch.recipient)
    raced, now = _receipts_ahead(conn, outcomes), utcnow()
    states = [_record(conn, job, result, raced, now) for job, result in outcomes]
    release_lane(conn, batch.recipient, lease=batch.lease_until)
    db.session.commit()
    return states


def _settle_alone(batch: Batch, job: Job, result: SendResult | None) -> str:
    """One outcome in its own transaction, with a minimal fallback if even that raises."""
    try:
        begin_write()
        conn = db.session.connection()
        lock_lane(conn, batch.recipient)
        status = _record(conn, job, result, _receipts_ahead(conn, [(job, result)]), utcnow())
        db.session.commit()
        return status
    except Exception as exc:
        db.session.rollback()
        log.error("message %d: settle failed (%s); recording a minimal outcome", job.message_id,
                  type(exc).__name__)
        log.debug("settle failure of message %d", job.message_id, exc_info=True)
        return _settle_fallback(job, result, exc)


def _settle_fallback(job: Job, result: SendResult | None, cause: Exception) -> str:
    """After a settle raised: give the message a visible state and a reason."""
    why = f"could not record the send ({type(cause).__name__})"
    if result is None:
        status, error, due = Status.QUEUED, None, utcnow()
    elif result.ok:
        status, error, due = Status.SUBMITTED, f"accepted by Vonage, but {why}", None
    elif result.ambiguous:
        window = float(current_app.config["OUTBOX_RECONCILE_SECONDS"])
        status, error = Status.UNCONFIRMED, f"{result.error or 'no answer'}; {why}"
        due = job.claimed_at + timedelta(seconds=window) if window > 0 else None
    elif result.retryable and job.attempts + result.tries < current_app.config["OUTBOX_MAX_ATTEMPTS"]:
        # Vonage did not take it (throttled, 5xx, refused): sending again is safe, so it stays at the head of
        # its lane and is retried, instead of failing a text that a transient database error hit
        cfg = current_app.config
        delay = backoff(job.attempts + result.tries, cfg["OUTBOX_RETRY_BASE_SECONDS"], cfg["OUTBOX_RETRY_CAP_SECONDS"])
        status, error = Status.QUEUED, f"{result.error or 'send failed'}; {why}"
        due = utcnow() + timedelta(seconds=delay)
    else:
        status, error, due = Status.FAILED, f"{result.error or 'send failed'}; {why}", None
    try:
        begin_write()
        updated = db.session.connection().execute(
            update(_messages)
            .where(_messages.c.id == job.message_id, _messages.c.status == Status.SENDING,
                   _messages.c.claimed_at == job.claimed_at)
            .values(status=status, error=clip(Message.error, error), next_attempt_at=due, claimed_at=None,
                    attempts=_messages.c.attempts + (0 if result is None else result.tries), updated_at=utcnow())
        ).rowcount
        if updated:
            record.message_settled(job.message_id, status, clip(Message.error, error))
        db.session.commit()
        return status
    except Exception as exc:
        db.session.rollback()
        log.error("message %d: fallback settle failed too (%s); its lease will expire and recovery takes over",
                  job.message_id, type(exc).__name__)
        return Status.SENDING


def _release_alone(batch: Batch) -> None:
    try:
        begin_write()
        conn = db.session.connection()
        lock_lane(conn, batch.recipient)
        release_lane(conn, batch.recipient, lease=batch.lease_until)
        db.session.commit()
    except Exception as exc:
        db.session.rollback()
        log.error("lane release failed (%s); its lease will expire and recovery takes over", type(exc).__name__)


def settle_batch(batch: Batch, outcomes: list[Outcome]) -> list[str]:
    """Record what happened to each message of a batch and release its lane. Never raises.

    Normally one transaction for the whole batch. If it raises, each message is settled on its own, so the
    one that fails is isolated (it still gets a state and a reason) and the others are recorded.
    """
    try:
        states = _settle_together(batch, outcomes)
    except Exception as exc:
        db.session.rollback()
        log.warning("settling a batch of %d failed (%s); settling its messages one by one", len(outcomes),
                    type(exc).__name__)
        states = [_settle_alone(batch, job, result) for job, result in outcomes]
        _release_alone(batch)
    for (job, result), status in zip(outcomes, states):
        if result is None:
            continue
        if result.ok:
            log.info("message %d sent to %s", job.message_id, mask_for_log(job.to))
        else:
            log.warning("message %d to %s: %s -> %s", job.message_id, mask_for_log(job.to), result.error, status)
        events.announce(events.message_status, chat_id=job.chat_id, message_id=job.message_id, status=status)
    return states
