"""Vonage signed webhooks (SMS API): the documented signature, every method, and a timestamp window.

Algorithm ("Signing Messages", docs/vonage.md §3): drop `sig`, sort the other parameters by key, replace
every `&` and `=` inside values with `_`, join as `&k1=v1&k2=v2...`. Then
- `md5hash` (the dashboard's legacy default): md5(string + secret), hex;
- `md5`, `sha1`, `sha256`, `sha512`: HMAC(secret, string) with that digest, hex.
The SDK's `Auth.check_signature` covers only the HMAC methods and never checks the timestamp's age, so this
module does both itself. Pure: no Flask, no database.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

METHODS = ("md5hash", "md5", "sha1", "sha256", "sha512")


class SignatureError(ValueError):
    """Why a webhook's signature was refused (words for the log and the 401 body; no secrets)."""


def signing_string(params: Mapping[str, str]) -> str:
    return "".join(
        f"&{k}={str(v).replace('&', '_').replace('=', '_')}" for k, v in sorted(params.items()) if k != "sig"
    )


def sign(params: Mapping[str, str], secret: str, method: str) -> str:
    """The signature Vonage computes for `params` (lower-case hex)."""
    if method not in METHODS:
        raise ValueError(f"unknown signature method {method!r}; use one of {', '.join(METHODS)}")
    text = signing_string(params).encode("utf-8")
    if method == "md5hash":
        return hashlib.md5(text + secret.encode("utf-8")).hexdigest()
    return hmac.new(secret.encode("utf-8"), text, getattr(hashlib, method)).hexdigest()


def verify(
    params: Mapping[str, str],
    secret: str,
    method: str,
    max_age: float = 300,
    now: float | None = None,
) -> None:
    """Raise SignatureError unless `params` carry a valid `sig` and a `timestamp` within `max_age` seconds."""
    sig = params.get("sig")
    if not sig or not isinstance(sig, str):
        raise SignatureError("missing signature")
    raw_ts = params.get("timestamp")
    if not raw_ts:
        raise SignatureError("missing timestamp")
    try:
        ts = int(str(raw_ts).strip())
    except ValueError:
        raise SignatureError("timestamp is not a number") from None
    now = time.time() if now is None else now
    if abs(now - ts) > max_age:
        raise SignatureError("timestamp outside the allowed window")
    expected = sign(params, secret, method)
    given = sig.strip().lower().encode("utf-8", "replace")  # bytes: compare_digest refuses non-ASCII str
    if not hmac.compare_digest(expected.encode("ascii"), given):
        raise SignatureError("signature does not match")
