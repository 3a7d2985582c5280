"""A gateway that sends nothing: it accepts every message and remembers it.

What it "sent" is also in the messages table (outbound rows), which is what the simulator page reads, so
the whole flow can be tried without a Vonage account.
"""

from __future__ import annotations

import itertools
import threading
import uuid

from ..proxy import segments
from .base import SendResult


class SimulatedGateway:
    name = "simulated"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self.sent: list[dict[str, str]] = []

    def send(self, *, to: str, sender: str, text: str, client_ref: str) -> SendResult:
        ids = [uuid.uuid4().hex[:16].upper() for _ in range(segments(text))]
        with self._lock:
            self.sent.append({"to": to, "from": sender, "text": text, "client_ref": client_ref})
        return SendResult(ok=True, status="0", message_ids=ids)
