"""What we know of a sent message's delivery: its parts, the receipts that name them, our client-ref.

Shared by the sender (which records Vonage's answer) and the delivery-receipt service (which records what
Vonage reports later). Vonage sends one receipt per part; a message is delivered when all its parts are, and
failed as soon as one part finally fails. A receipt whose Vonage id we never saw but whose `client-ref` names
one of our messages proves that Vonage accepted that message: this is how a send whose answer was lost is
reconciled instead of being sent twice (docs/delivery.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import or_, select

from ..extensions import db
from ..models import Message, Receipt, SmsPart, clip, utcnow
from ..proxy import segments
from ..states import Status

# Delivery-receipt statuses (Vonage's vocabulary) that end a part's delivery as a failure, and how a
# message reads them ("undelivered" is reported as failed).
RECEIPT_FAILURES = {"failed": Status.FAILED, "expired": Status.EXPIRED, "rejected": Status.REJECTED,
                    "undelivered": Status.FAILED}
RECEIPT_FINAL = {"delivered", *RECEIPT_FAILURES}
RECEIPT_STATUSES = {"delivered", "accepted", "buffered", "unknown", *RECEIPT_FAILURES}
CLIENT_REF_PREFIX = "m"
HISTORY_KEEP = 20  # earlier attempts kept on one message (meta.history); older ones are dropped


def note_attempt(msg: Message, status: str, error: str | None, then: str, at: datetime | None = None) -> None:
    """Keep the outcome of an attempt of `msg` that is about to be replaced by another attempt of the same row.

    Written only where a row is sent again: a retry after a retryable failure (`then` "retried"), the automatic
    resend of an unconfirmed send ("resent"). Never on the send path of a text that goes through the first
    time, so the outbox's hot path writes nothing more. The transcript and the API show these as the message's
    earlier attempts (`meta.history`: oldest first, at most HISTORY_KEEP).
    """
    entry = {"at": (at or utcnow()).isoformat(), "status": str(status), "error": clip(Message.error, error),
             "then": then}
    earlier = list((msg.meta or {}).get("history") or [])[-(HISTORY_KEEP - 1):]
    msg.meta = {**(msg.meta or {}), "history": [*earlier, entry]}


def client_ref(message_id: int) -> str:
    """The `client-ref` we send with a message; Vonage echoes it in every receipt for it."""
    return f"{CLIENT_REF_PREFIX}{message_id}"


def message_id_from_ref(ref: str | None) -> int | None:
    if not ref or not ref.startswith(CLIENT_REF_PREFIX) or not ref[1:].isdigit() or len(ref) > 19:
        return None
    return int(ref[1:])


def message_status_from_parts(part_states: list[str], current: str, expected: int = 1) -> str:
    """A message is delivered when all its parts are; failed as soon as one part finally fails."""
    for state, status in RECEIPT_FAILURES.items():
        if state in part_states:
            return status
    if part_states and len(part_states) >= expected and all(s == "delivered" for s in part_states):
        return Status.DELIVERED
    return current


def apply_part_status(part: SmsPart, status: str, err_code: str | None) -> None:
    """A final state is never replaced by a later non-final one (receipts can arrive out of order)."""
    if part.status in RECEIPT_FINAL and status not in RECEIPT_FINAL:
        return
    part.status = status
    part.error_code = err_code


def expected_parts(msg: Message) -> int:
    meta = msg.meta or {}
    return int(meta.get("parts_expected") or segments(msg.text or ""))


def refresh_message_status(msg: Message, current: str) -> str:
    """The message's state from its parts (`current` when they decide nothing yet)."""
    status = message_status_from_parts([p.status for p in msg.parts], current, expected_parts(msg))
    if status in RECEIPT_FAILURES.values():
        codes = sorted({p.error_code for p in msg.parts if p.status in RECEIPT_FAILURES and p.error_code})
        msg.error = clip(Message.error, f"delivery {status} (err-code {', '.join(codes) or '?'})")
    elif status in (Status.SUBMITTED, Status.DELIVERED):
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
        ref_id = message_id_from_ref(receipt.client_ref)
        if ref_id is not None and ref_id != msg.id:
            continue  # the same Vonage id, but a receipt for another of our messages
        part = parts.get(receipt.vonage_id)
        if part is None:
            part = SmsPart(vonage_id=receipt.vonage_id, status=Status.SUBMITTED)
            msg.parts.append(part)
            parts[receipt.vonage_id] = part
        apply_part_status(part, receipt.status, receipt.err_code)
        db.session.flush()
        receipt.part_id = part.id
    return len(parts)
