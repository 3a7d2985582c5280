"""A gateway that sends nothing: it accepts every message and remembers it.

What it "sent" is also in the messages table (outbound rows), which is what the simulator page reads, so
the whole flow can be tried without a Vonage account.

Like Vonage, it later reports delivery: each accepted part gets a "delivered" receipt, posted to the app's
own `/webhooks/delivery-receipt` exactly as Vonage posts it (signed, with the webhook token; loopback.py). In a
server the receipts follow after a short delay (`SIMULATED_RECEIPT_SECONDS`, default 1.0; 0 turns them off);
under TESTING they wait in `pending_receipts` until a test calls `flush_receipts()`, so unit tests never start
threads.

`SIMULATED_FAILING_NUMBERS` lists numbers this carrier cannot deliver to ("+447700900999:6,+447700900998": a
number, optionally with the err-code its receipts carry, default 1): their texts are accepted and then reported
`failed`, as Vonage reports a phone that is off or a carrier that blocked the text, so the whole path of a failed
delivery (its explained reason, the resend, the attempts) can be tried without Vonage.
"""

from __future__ import annotations

import itertools
import logging
import threading
import uuid
from datetime import UTC, datetime

from flask import Flask, current_app, has_app_context

from ..proxy import segments, to_vonage
from .base import SendResult
from .loopback import post_webhook

log = logging.getLogger(__name__)


def failing_numbers(spec: str) -> dict[str, str]:
    """SIMULATED_FAILING_NUMBERS as {E.164 number: err-code}; entries that do not parse are ignored."""
    out: dict[str, str] = {}
    for item in (spec or "").split(","):
        number, _, code = item.strip().partition(":")
        number, code = number.strip(), code.strip() or "1"
        if number and code.isdigit():
            out["+" + number.lstrip("+")] = code
    return out


class SimulatedGateway:
    name = "simulated"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self.sent: list[dict[str, str]] = []
        self.pending_receipts: list[dict[str, str]] = []
        self.app: Flask | None = None

    def bind(self, app: Flask) -> None:
        """The app whose database receives the simulated receipts (sends may run in threads without one)."""
        self.app = app

    def send(self, *, to: str, sender: str, text: str, client_ref: str) -> SendResult:
        ids = [uuid.uuid4().hex[:16].upper() for _ in range(segments(text))]
        with self._lock:
            self.sent.append({"to": to, "from": sender, "text": text, "client_ref": client_ref})
        app = self.app or (current_app._get_current_object() if has_app_context() else None)
        if app is not None:
            self._schedule_receipts(app, ids, to, sender, client_ref)
        return SendResult(ok=True, status="0", message_ids=ids)

    def _schedule_receipts(self, app: Flask, ids: list[str], to: str, sender: str, client_ref: str) -> None:
        now = datetime.now(UTC).strftime("%y%m%d%H%M")
        err_code = failing_numbers(app.config.get("SIMULATED_FAILING_NUMBERS", "")).get(to)
        receipts = [
            {
                "msisdn": to_vonage(to),
                "to": to_vonage(sender),
                "messageId": vonage_id,
                "status": "delivered" if err_code is None else "failed",
                "err-code": err_code or "0",
                "scts": now,
                "client-ref": client_ref,
                "message-timestamp": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            }
            for vonage_id in ids
        ]
        delay = float(app.config.get("SIMULATED_RECEIPT_SECONDS", 1.0))
        if app.testing:
            with self._lock:
                self.pending_receipts.extend(receipts)
            return
        if delay <= 0:
            return
        timer = threading.Timer(delay, self._deliver, args=(app, receipts))
        timer.daemon = True
        timer.start()

    def _deliver(self, app: Flask, receipts: list[dict[str, str]]) -> None:
        for params in receipts:
            try:
                status, body = post_webhook(app, "/webhooks/delivery-receipt", params)
            except Exception as exc:
                log.error("simulated receipt could not be posted (%s)", type(exc).__name__)
                continue
            if status >= 300:
                log.warning("simulated receipt refused with %d: %s", status, body.get("error"))

    def flush_receipts(self, app: Flask) -> int:
        """Record every pending receipt now (tests). Returns how many."""
        with self._lock:
            receipts, self.pending_receipts = self.pending_receipts, []
        self._deliver(app, receipts)
        return len(receipts)
