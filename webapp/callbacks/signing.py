"""The signature of an event callback: `X-SMS-Proxy-Signature: t=<unix seconds>,v1=<hex>`.

`v1` is HMAC-SHA256, keyed with EVENTS_SECRET, over `<t>.<raw body>` (the exact bytes of the POST body). A
receiver recomputes it, compares in constant time, and refuses a `t` older than five minutes, so a captured
request cannot be replayed later (docs/events.md has a complete receiver). Several `v1=` entries may appear
(while a secret is being rotated); one match is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-SMS-Proxy-Signature"
TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """The signature is missing, malformed, wrong, or too old."""


def compute(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def header_value(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={compute(secret, t, body)}"


def verify(
    secret: str, body: bytes, header: str | None, tolerance: float = TOLERANCE_SECONDS, now: float | None = None
) -> int:
    """Check a signature header against `body`; returns its timestamp, or raises SignatureError."""
    if not header:
        raise SignatureError(f"no {HEADER} header")
    timestamp: int | None = None
    given: list[str] = []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1" and value:
            given.append(value)
    if timestamp is None or not given:
        raise SignatureError("malformed signature header (want t=<unix seconds>,v1=<hex>)")
    age = (time.time() if now is None else now) - timestamp
    if age > tolerance:
        raise SignatureError(f"timestamp is {age:.0f} s old (more than {tolerance:.0f} s)")
    if age < -tolerance:
        raise SignatureError("timestamp is in the future")
    expected = compute(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, v) for v in given):
        raise SignatureError("signature does not match")
    return timestamp
