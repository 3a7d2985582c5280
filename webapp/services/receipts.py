"""Delivery receipts: update each sent part, and the message from its parts.

Every receipt is stored (table `receipts`), known or not. A receipt names its part by Vonage's id and, when
we sent it, our message by `client-ref` ("m<id>"); the pair decides which of our messages it belongs to, so
a gateway that repeats an id cannot mix two messages up. A receipt whose Vonage id we never saw but whose
client-ref names one of our messages settles a send whose answer was lost (outbox/delivery.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select

from .. import events
from ..callbacks import record
from ..database import begin_write
from ..extensions import db
from ..models import Message, Receipt, SmsPart
from ..outbox.delivery import (
    RECEIPT_STATUSES,
    absorb_receipts,
    apply_part_status,
    message_id_from_ref,
    refresh_message_status,
)
from ..states import Direction, Status
from .errors import InvalidInput

log = logging.getLogger(__name__)

# Message states in which a receipt carrying our client-ref settles an unresolved send.
UNRESOLVED = {Status.QUEUED, Status.UNCONFIRMED}


@dataclass(frozen=True)
class ReceiptResult:
    known: bool
    message_id: int | None
    status: str | None


def _validate(params: Mapping[str, str]) -> tuple[str, str, str | None, str | None]:
    vonage_id = (params.get("messageId") or "").strip()
    if not vonage_id:
        raise InvalidInput("messageId is required", field="messageId")
    if len(vonage_id) > 64:
        raise InvalidInput("messageId is longer than 64 characters", field="messageId")
    status = (params.get("status") or "").strip().lower()
    if status not in RECEIPT_STATUSES:
        raise InvalidInput(f"status must be one of {sorted(RECEIPT_STATUSES)}", field="status")
    err_code = (params.get("err-code") or "").strip()[:8] or None
    ref = (params.get("client-ref") or "").strip()[:100] or None
    return vonage_id, status, err_code, ref


def record_receipt(params: Mapping[str, str]) -> ReceiptResult:
    vonage_id, status, err_code, ref = _validate(params)
    begin_write()
    part = _part(vonage_id, message_id_from_ref(ref))
    receipt = Receipt(
        vonage_id=vonage_id,
        client_ref=ref,
        status=status,
        err_code=err_code,
        part_id=part.id if part else None,
        payload={k: str(v)[:200] for k, v in params.items() if k not in ("msisdn", "to", "sig")},
    )
    db.session.add(receipt)
    if part is not None:
        apply_part_status(part, status, err_code)
        msg: Message = part.message
    else:
        msg = _reconcilable(ref)
        if msg is None:
            db.session.commit()
            log.info("receipt for unknown vonage id %s stored", vonage_id)
            return ReceiptResult(False, None, None)
        db.session.flush()
        absorb_receipts(msg)
        log.info("message %d reconciled by a receipt carrying its client-ref", msg.id)
    before = msg.status
    current = Status.SUBMITTED if before in UNRESOLVED else before
    if current != before:
        msg.next_attempt_at = None
        msg.claimed_at = None
    new_status = refresh_message_status(msg, current)
    if new_status != before:
        record.message_settled(msg.id, new_status, msg.error)  # message.delivered / message.failed
    db.session.commit()
    if new_status != before:
        events.announce(events.message_status, chat_id=msg.chat_id, message_id=msg.id, status=new_status)
    return ReceiptResult(True, msg.id, new_status)


def _reconcilable(ref: str | None) -> Message | None:
    """The outbound message a receipt's client-ref names, unless its send is still in flight.

    While a message is `sending`, the worker's settle() absorbs the stored receipt itself; touching the row
    here would race it.
    """
    message_id = message_id_from_ref(ref)
    if message_id is None:
        return None
    msg = db.session.get(Message, message_id, with_for_update={"key_share": True})
    if msg is None or msg.direction != Direction.OUT or msg.status == Status.SENDING:
        return None
    return msg


def _part(vonage_id: str, message_id: int | None) -> SmsPart | None:
    """The part a receipt names: by (our message, Vonage's id) when it carries our client-ref, else the
    newest part with that Vonage id."""
    query = select(SmsPart).where(SmsPart.vonage_id == vonage_id)
    if message_id is not None:
        query = query.where(SmsPart.message_id == message_id)
    return db.session.scalar(query.order_by(SmsPart.id.desc()).limit(1))
