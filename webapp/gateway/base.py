"""What every gateway offers: send one SMS, get a structured result (never an exception)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class SendResult:
    """Outcome of one send request.

    ok: every part accepted. retryable: sending again later is safe and useful. ambiguous: the request may
    have reached the provider before the connection failed, so a resend could deliver twice. tries: how many
    requests this outcome took (the sender retries quick, unambiguous failures itself before reporting).
    """

    ok: bool
    retryable: bool = False
    ambiguous: bool = False
    status: str | None = None
    error: str | None = None
    message_ids: list[str] = field(default_factory=list)
    http_status: int | None = None
    tries: int = 1


class SmsGateway(Protocol):
    name: str

    def send(self, *, to: str, sender: str, text: str, client_ref: str) -> SendResult:
        """Send `text` from `sender` to `to` (both E.164). Never raises for provider errors."""
        ...
