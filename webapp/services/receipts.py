"""Delivery receipts: update each sent part, and the message from its parts."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select

from .. import live
from ..database import begin_write
from ..extensions import db
from ..models import Message, Receipt, SmsPart
from . import InvalidInput

log = logging.getLogger(__name__)

FINAL_FAILURES = ("failed", "expired", "rejected", "undelivered")
KNOWN = {"delivered", "accepted", "buffered", "unknown", *FINAL_FAILURES}


@dataclass(frozen=True)
class ReceiptResult:
    known: bool
    message_id: int | None
    status: str | None


def message_status_from_parts(part_states: list[str], current: str) -> str:
    """A message is delivered when all its parts are; failed as soon as one part finally fails."""
    for state in FINAL_FAILURES:
        if state in part_states:
            return "failed" if state == "undelivered" else state
    if part_states and all(s == "delivered" for s in part_states):
        return "delivered"
    return current


def record_receipt(params: Mapping[str, str]) -> ReceiptResult:
    vonage_id = (params.get("messageId") or "").strip()
    if not vonage_id:
        raise InvalidInput("messageId is required", field="messageId")
    if len(vonage_id) > 64:
        raise InvalidInput("messageId is longer than 64 characters", field="messageId")
    status = (params.get("status") or "").strip().lower()
    if status not in KNOWN:
        raise InvalidInput(f"status must be one of {sorted(KNOWN)}", field="status")
    err_code = (params.get("err-code") or "")[:8] or None
    begin_write()
    part = db.session.scalar(select(SmsPart).where(SmsPart.vonage_id == vonage_id))
    db.session.add(
        Receipt(
            vonage_id=vonage_id,
            status=status,
            err_code=err_code,
            part_id=part.id if part else None,
            payload={k: str(v)[:200] for k, v in params.items() if k not in ("msisdn", "to", "sig")},
        )
    )
    if part is None:
        db.session.commit()
        log.info("receipt for unknown vonage id %s stored", vonage_id)
        return ReceiptResult(False, None, None)
    part.status = status
    part.error_code = err_code
    msg: Message = part.message
    new_status = message_status_from_parts([p.status for p in msg.parts], msg.status)
    changed = new_status != msg.status
    if changed:
        msg.status = new_status
        if new_status != "delivered":
            msg.error = f"delivery {new_status} (err-code {err_code or '?'})"
    db.session.commit()
    if changed:
        live.message_status(msg.chat_id, msg.id, new_status)
    return ReceiptResult(True, msg.id, new_status)
