"""Delivery receipts: update each sent part, and the message from its parts.

Every receipt is stored (table `receipts`), known or not. A receipt whose Vonage id we never saw but whose
`client-ref` names one of our messages proves that Vonage accepted that message: this is how a send whose
answer was lost (connection dropped, worker killed) is reconciled instead of being sent twice (outbox.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import or_, select

from .. import live
from ..database import begin_write
from ..extensions import db
from ..models import Message, Receipt, SmsPart
from ..proxy import segments
from . import InvalidInput

log = logging.getLogger(__name__)

FINAL_FAILURES = ("failed", "expired", "rejected", "undelivered")
FINAL = {"delivered", *FINAL_FAILURES}
KNOWN = {"delivered", "accepted", "buffered", "unknown", *FINAL_FAILURES}
# Message states in which a receipt carrying our client-ref settles an unresolved send.
UNRESOLVED = {"queued", "unconfirmed"}
CLIENT_REF_PREFIX = "m"


def client_ref(message_id: int) -> str:
    """The `client-ref` we send with a message; Vonage echoes it in every receipt for it."""
    return f"{CLIENT_REF_PREFIX}{message_id}"


def message_id_from_ref(ref: str | None) -> int | None:
    if not ref or not ref.startswith(CLIENT_REF_PREFIX) or not ref[1:].isdigit() or len(ref) > 19:
        return None
    return int(ref[1:])


@dataclass(frozen=True)
class ReceiptResult:
    known: bool
    message_id: int | None
    status: str | None


def message_status_from_parts(part_states: list[str], current: str, expected: int = 1) -> str:
    """A message is delivered when all its parts are; failed as soon as one part finally fails."""
    for state in FINAL_FAILURES:
        if state in part_states:
            return "failed" if state == "undelivered" else state
    if part_states and len(part_states) >= expected and all(s == "delivered" for s in part_states):
        return "delivered"
    return current


def apply_part_status(part: SmsPart, status: str, err_code: str | None) -> None:
    """A final state is never replaced by a later non-final one (receipts can arrive out of order)."""
    if part.status in FINAL and status not in FINAL:
        return
    part.status = status
    part.error_code = err_code


def expected_parts(msg: Message) -> int:
    meta = msg.meta or {}
    return int(meta.get("parts_expected") or segments(msg.text or ""))


def refresh_message_status(msg: Message, current: str) -> str:
    """The message's state from its parts (`current` when they decide nothing yet)."""
    status = message_status_from_parts([p.status for p in msg.parts], current, expected_parts(msg))
    if status in FINAL_FAILURES:
        codes = sorted({p.error_code for p in msg.parts if p.status in FINAL_FAILURES and p.error_code})
        msg.error = f"delivery {status} (err-code {', '.join(codes) or '?'})"
    elif status in ("submitted", "delivered"):
        msg.error = None
    msg.status = status
    return status


def absorb_receipts(msg: Message, vonage_ids: Iterable[str] = ()) -> int:
    """Attach stored receipts that belong to `msg` (by our client-ref, or by these Vonage ids) to its parts.

    Returns how many parts the message has afterwards. Inside the caller's transaction.
    """
    ids = list(vonage_ids)
    cond = Receipt.client_ref == client_ref(msg.id)
    if ids:
        cond = or_(cond, Receipt.vonage_id.in_(ids))
    receipts = db.session.scalars(select(Receipt).where(cond, Receipt.part_id.is_(None)).order_by(Receipt.id))
    parts = {p.vonage_id: p for p in msg.parts}
    for receipt in receipts:
        part = parts.get(receipt.vonage_id)
        if part is None:
            part = SmsPart(vonage_id=receipt.vonage_id, status="submitted")
            msg.parts.append(part)
            parts[receipt.vonage_id] = part
        apply_part_status(part, receipt.status, receipt.err_code)
        db.session.flush()
        receipt.part_id = part.id
    return len(parts)


def _validate(params: Mapping[str, str]) -> tuple[str, str, str | None, str | None]:
    vonage_id = (params.get("messageId") or "").strip()
    if not vonage_id:
        raise InvalidInput("messageId is required", field="messageId")
    if len(vonage_id) > 64:
        raise InvalidInput("messageId is longer than 64 characters", field="messageId")
    status = (params.get("status") or "").strip().lower()
    if status not in KNOWN:
        raise InvalidInput(f"status must be one of {sorted(KNOWN)}", field="status")
    err_code = (params.get("err-code") or "").strip()[:8] or None
    ref = (params.get("client-ref") or "").strip()[:100] or None
    return vonage_id, status, err_code, ref


def record_receipt(params: Mapping[str, str]) -> ReceiptResult:
    vonage_id, status, err_code, ref = _validate(params)
    begin_write()
    part = db.session.scalar(select(SmsPart).where(SmsPart.vonage_id == vonage_id))
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
    current = "submitted" if before in UNRESOLVED else before
    if current != before:
        msg.next_attempt_at = None
        msg.claimed_at = None
    new_status = refresh_message_status(msg, current)
    db.session.commit()
    if new_status != before:
        live.message_status(msg.chat_id, msg.id, new_status)
    return ReceiptResult(True, msg.id, new_status)


def _reconcilable(ref: str | None) -> Message | None:
    """The outbound message a receipt's client-ref names, unless its send is still in flight.

    While a message is `sending`, the worker's settle() absorbs the stored receipt itself; touching the row
    here would race it.
    """
    message_id = message_id_from_ref(ref)
    if message_id is None:
        return None
    msg = db.session.get(Message, message_id, with_for_update=True)
    if msg is None or msg.direction != "out" or msg.status == "sending":
        return None
    return msg
