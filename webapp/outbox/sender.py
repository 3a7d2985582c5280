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
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import or_, select, update

from .. import events
from ..callbacks import record
from ..database import begin_write
from ..extensions import db
from ..gateway import SendResult, SmsGateway
from ..models import Message, Receipt, SmsPart, clip, utcnow
from ..proxy import mask_for_log
from ..ratelimit import RateLimiter, acquire, build_rate_limiter
from ..states import Status
from .claim import Job
from .delivery import absorb_receipts, refresh_message_status
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


# ------------------------------------------------------------------ deciding the outcome


def await_receipt(msg: Message, why: str, claimed_at: datetime | None) -> None:
    """Park an ambiguous send: it waits for a receipt until its claim time + OUTBOX_RECONCILE_SECONDS."""
    window = float(current_app.config["OUTBOX_RECONCILE_SECONDS"])
    msg.status = Status.UNCONFIRMED
    msg.claimed_at = None
    if window > 0:
        msg.next_attempt_at = (claimed_at or utcnow()) + timedelta(seconds=window)
        msg.error = clip(Message.error, f"{why}; waiting {window:g} s for a delivery receipt, then resending")
    else:
        msg.next_attempt_at = None
        msg.error = clip(Message.error, f"{why}; may or may not have been sent: check, then resend or leave it")


def record_result(msg: Message, result: SendResult, claimed_at: datetime | None) -> str:
    """Record a send's outcome on the message (inside the caller's transaction); returns its new state."""
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
        return refresh_message_status(msg, Status.SUBMITTED)
    msg.error = clip(Message.error, result.error or "send failed")
    if result.retryable and msg.attempts < cfg["OUTBOX_MAX_ATTEMPTS"]:
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


def _settle_accepted(job: Job, result: SendResult) -> str | None:
    """The common case in a few prebuilt statements: a first send Vonage accepted, no receipt ahead of it.

    None (nothing written) when anything is unusual; `_settle_general` then handles it through the ORM.
    """
    if not result.ok or not result.message_ids:
        return None
    begin_write()
    conn = db.session.connection()
    lock_lane(conn, job.to)
    early = conn.execute(
        select(_receipts.c.id)
        .where(
            or_(_receipts.c.client_ref == job.client_ref, _receipts.c.vonage_id.in_(result.message_ids)),
            _receipts.c.part_id.is_(None),
        )
        .limit(1)
    ).first()
    if early is not None:
        db.session.rollback()
        return None
    now = utcnow()
    updated = conn.execute(
        update(_messages)
        .where(
            _messages.c.id == job.message_id,
            _messages.c.status == Status.SENDING,
            _messages.c.claimed_at == job.claimed_at,
            _messages.c.attempts == 0,
            _messages.c.meta.is_(None),
        )
        .values(status=Status.SUBMITTED, attempts=1, claimed_at=None, error=None, next_attempt_at=None,
                meta={"parts_expected": len(result.message_ids)}, updated_at=now)
    ).rowcount
    if updated != 1:
        db.session.rollback()
        return None
    conn.execute(
        _parts.insert(),
        [{"message_id": job.message_id, "vonage_id": v, "status": Status.SUBMITTED, "updated_at": now}
         for v in dict.fromkeys(result.message_ids)],
    )
    release_lane(conn, job.to, now)
    db.session.commit()
    return Status.SUBMITTED


def _settle_general(job: Job, result: SendResult) -> str:
    begin_write()
    conn = db.session.connection()
    lock_lane(conn, job.to)
    msg = db.session.get(Message, job.message_id, populate_existing=True)
    if msg is None:  # deleted meanwhile: nothing to record, free the lane
        release_lane(conn, job.to)
        db.session.commit()
        return "gone"
    ours = _still_ours(msg, job)
    status = record_result(msg, result, job.claimed_at)
    db.session.flush()
    if ours:  # otherwise recovery released the lane already, and another worker may hold it now
        release_lane(conn, job.to)
    record.message_settled(job.message_id, status, msg.error)  # delivered / failed: the backend's event
    db.session.commit()
    return status


def _settle_fallback(job: Job, result: SendResult, cause: Exception) -> str:
    """After a settle raised: give the message a visible state and reason, and free its lane."""
    db.session.rollback()
    why = f"could not record the send ({type(cause).__name__})"
    if result.ok:
        status, error, due = Status.SUBMITTED, f"accepted by Vonage, but {why}", None
    elif result.ambiguous:
        window = float(current_app.config["OUTBOX_RECONCILE_SECONDS"])
        status, error = Status.UNCONFIRMED, f"{result.error or 'no answer'}; {why}"
        due = job.claimed_at + timedelta(seconds=window) if window > 0 else None
    else:
        status, error, due = Status.FAILED, f"{result.error or 'send failed'}; {why}", None
    try:
        begin_write()
        conn = db.session.connection()
        lock_lane(conn, job.to)
        updated = conn.execute(
            update(_messages)
            .where(_messages.c.id == job.message_id, _messages.c.status == Status.SENDING,
                   _messages.c.claimed_at == job.claimed_at)
            .values(status=status, error=clip(Message.error, error), next_attempt_at=due, claimed_at=None,
                    attempts=_messages.c.attempts + 1, updated_at=utcnow())
        ).rowcount
        if updated:
            release_lane(conn, job.to)
            record.message_settled(job.message_id, status, clip(Message.error, error))
        db.session.commit()
        return status
    except Exception as exc:
        db.session.rollback()
        log.error("message %d: fallback settle failed too (%s); its lease will expire and recovery takes over",
                  job.message_id, type(exc).__name__)
        return Status.SENDING


def settle(job: Job, result: SendResult) -> str:
    """Record the outcome of one send and release its lane. Never raises; returns the message's new state."""
    try:
        status = _settle_accepted(job, result) or _settle_general(job, result)
    except Exception as exc:
        log.error("message %d: settle failed (%s); recording a minimal outcome", job.message_id,
                  type(exc).__name__)
        log.debug("settle failure of message %d", job.message_id, exc_info=True)
        status = _settle_fallback(job, result, exc)
    if result.ok:
        log.info("message %d sent to %s", job.message_id, mask_for_log(job.to))
    else:
        log.warning("message %d to %s: %s -> %s", job.message_id, mask_for_log(job.to), result.error, status)
    events.announce(events.message_status, chat_id=job.chat_id, message_id=job.message_id, status=status)
    return status
