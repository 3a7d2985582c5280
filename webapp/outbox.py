"""The outbox: queued outbound messages are claimed, sent through the gateway, and settled.

`drain_once()` sends what is due now (tests call it directly); `Worker` runs it in the background,
woken at once by `wake()` after a commit and polling as a fallback.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass
from datetime import timedelta

from flask import Flask, current_app
from sqlalchemy import select, update

from . import live
from .extensions import db
from .gateway import SendResult, SmsGateway
from .models import Message, SmsPart, utcnow
from .proxy import mask_for_log

log = logging.getLogger(__name__)

_wake = threading.Event()


def wake() -> None:
    """Tell the worker in this process that work was queued."""
    _wake.set()


def gateway() -> SmsGateway:
    return current_app.extensions["sms_gateway"]


def backoff(attempts: int, base: float = 1.0, cap: float = 300.0) -> float:
    """Seconds before retry number `attempts`: exponential with full jitter."""
    return random.uniform(0, min(cap, base * 2 ** max(attempts - 1, 0))) + base / 2


def claim(limit: int) -> list[int]:
    """Atomically move up to `limit` due messages from queued to sending; return their ids.

    One UPDATE ... WHERE id IN (subquery) RETURNING works on both backends (shared/stack.md §5.4);
    on PostgreSQL the subquery takes FOR UPDATE SKIP LOCKED so several workers never claim one row.
    """
    now = utcnow()
    due = (
        select(Message.id)
        .where(Message.status == "queued", Message.next_attempt_at <= now)
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


def settle(msg: Message, result: SendResult) -> str:
    """Record a send's outcome on the message (inside the caller's transaction)."""
    cfg = current_app.config
    msg.attempts = (msg.attempts or 0) + 1
    msg.claimed_at = None
    for vonage_id in result.message_ids:
        msg.parts.append(SmsPart(vonage_id=vonage_id))
    if result.ok:
        msg.status = "submitted"
        msg.error = None
    elif result.retryable and msg.attempts < cfg["OUTBOX_MAX_ATTEMPTS"]:
        msg.status = "queued"
        msg.error = result.error
        msg.next_attempt_at = utcnow() + timedelta(seconds=backoff(msg.attempts))
    elif result.ambiguous:
        # At most once: Vonage may have this message already, so we do not resend it blindly.
        msg.status = "unknown"
        msg.error = result.error
    else:
        msg.status = "failed"
        msg.error = result.error
    return msg.status


def send_one(message_id: int) -> Settled:
    msg = db.session.get(Message, message_id)
    assert msg is not None
    to, sender, text = msg.to_number, msg.from_number, msg.text
    db.session.commit()  # no transaction (or lock) is held during the HTTP call
    result = gateway().send(to=to, sender=sender, text=text, client_ref=f"m{message_id}")
    msg = db.session.get(Message, message_id)
    status = settle(msg, result)
    db.session.commit()
    if result.ok:
        log.info("message %d sent to %s", message_id, mask_for_log(to))
    else:
        log.warning("message %d to %s: %s -> %s", message_id, mask_for_log(to), result.error, status)
    return Settled(message_id, msg.chat_id, status)


def drain_once(limit: int = 50) -> int:
    """Send every message due now, in id order, at most `limit` per claim. Returns how many were tried."""
    done = 0
    while ids := claim(limit):
        for message_id in ids:
            settled = send_one(message_id)
            live.message_status(settled.chat_id, settled.message_id, settled.status)
            done += 1
    return done


def recover_stale() -> int:
    """Put back messages whose sender died mid-claim (lease expired) so they are sent."""
    lease = timedelta(seconds=current_app.config["OUTBOX_LEASE_SECONDS"])
    count = db.session.execute(
        update(Message)
        .where(Message.status == "sending", Message.claimed_at < utcnow() - lease)
        .values(status="queued", claimed_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return count or 0


class Worker:
    """Background sender for one process."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, name="outbox-worker", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        _wake.set()
        if self.thread:
            self.thread.join(timeout=10)

    def run(self) -> None:
        poll = self.app.config["OUTBOX_POLL_SECONDS"]
        with self.app.app_context():
            recovered = recover_stale()
            if recovered:
                log.warning("outbox: %d interrupted message(s) re-queued", recovered)
        while not self._stop.is_set():
            _wake.wait(timeout=poll)
            _wake.clear()
            try:
                with self.app.app_context():
                    drain_once()
            except Exception:
                log.exception("outbox: drain failed; retrying shortly")
                self._stop.wait(poll)
