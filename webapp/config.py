"""Configuration: defaults, and `from_env()`, the only place that reads os.environ.

Every setting has a safe default so `python -m webapp` runs on a fresh machine: SQLite under
`instance/`, the simulated SMS gateway, port 3000.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

TRUE = {"1", "true", "yes", "on"}

DEFAULTS: dict[str, Any] = {
    "SECRET_KEY": "",  # empty: generated once and kept in instance/secret_key
    "HOST": "127.0.0.1",
    "PORT": 3000,
    "DEBUG": False,
    "DATABASE_URL": "",  # empty: sqlite:///<instance>/smsproxy.db
    "SMS_GATEWAY": "",  # empty: "vonage" when credentials are set, else "simulated"
    "VONAGE_API_KEY": "",
    "VONAGE_API_SECRET": "",
    "VONAGE_SIGNATURE_SECRET": "",
    "VONAGE_SIGNATURE_METHOD": "sha256",
    "VONAGE_SIGNATURE_MAX_AGE": 300,
    "VONAGE_REST_HOST": "rest.nexmo.com",
    "VONAGE_API_HOST": "api.nexmo.com",
    "VONAGE_TIMEOUT": 10,
    "VONAGE_MAX_SENDS_PER_SECOND": 30.0,
    "PROXY_NUMBERS": "",
    "DEFAULT_REGION": "GB",
    "API_TOKEN": "",
    "AUTO_REPLY": True,
    "AUTO_REPLY_INTERVAL": 3600,
    "SEND_END_NOTICE": True,
    "INTRO_TEMPLATE": (
        "You're now connected with {other}. Reply to this number to message them; "
        "your own number stays private."
    ),
    "END_TEMPLATE": "This conversation has ended. Messages to this number are no longer forwarded.",
    "AUTO_REPLY_TEMPLATE": "This number is not in an active conversation.",
    "OPT_OUT_TEMPLATE": "The other person has left this conversation.",
    "LABEL_DEFAULT": "your contact",
    "MASK_NUMBERS_IN_UI": True,
    "OUTBOX_WORKER": True,
    "OUTBOX_POLL_SECONDS": 1.0,
    "OUTBOX_MAX_ATTEMPTS": 12,
    "OUTBOX_LEASE_SECONDS": 15,  # a worker holds a lane this long at most (at least VONAGE_TIMEOUT + 2)
    "OUTBOX_RETRY_BASE_SECONDS": 0.2,  # first retry after ~base s, doubling (full jitter) up to the cap
    "OUTBOX_RETRY_CAP_SECONDS": 300.0,
    # An interrupted or unanswered send waits this long (from its claim) for a receipt carrying its client-ref,
    # then is sent again (at-least-once with reconciliation). 0: never resend it automatically (at-most-once).
    "OUTBOX_RECONCILE_SECONDS": 20,
    "OUTBOX_CONCURRENCY": 8,  # parallel sends (one keep-alive connection each), under the rate limit
    "RATE_LIMIT_REDIS_URL": "",  # empty: per-process limiter; redis://...: shared by every worker process
    "MULTIPART_TIMEOUT_SECONDS": 300,  # an incomplete multipart SMS is relayed with a marker after this
    "SOCKETIO_MESSAGE_QUEUE": "",
    "SOCKETIO_CHANNEL": "flask-socketio",  # Redis pub/sub channel; processes of one deployment share it
    "SESSION_HOURS": 12,
    "LOGIN_FREE_ATTEMPTS": 5,  # failed sign-ins per name before each further try is slowed down
    "LOGIN_BASE_DELAY": 2.0,  # seconds of the first slow-down; doubles with each further failure
    "SIMULATED_RECEIPT_SECONDS": 1.0,  # simulated gateway: delay before a "delivered" receipt; 0 = none
    "LOG_LEVEL": "INFO",
    # Event callbacks to the firm's backend (docs/events.md). Empty EVENTS_URL: nothing is recorded or sent.
    "EVENTS_URL": "",
    "EVENTS_SECRET": "",  # HMAC-SHA256 key of X-SMS-Proxy-Signature; required when EVENTS_URL is set
    "EVENTS_TIMEOUT_SECONDS": 5.0,  # one delivery attempt: longer (or a non-2xx answer) is a failure
    "EVENTS_RETRY_BASE_SECONDS": 1.0,  # first retry after ~base s, doubling (full jitter) up to the cap
    "EVENTS_RETRY_CAP_SECONDS": 600.0,
    "EVENTS_MAX_AGE_SECONDS": 86400.0,  # an event is retried this long after it happened, then given up
    "EVENTS_CONCURRENCY": 4,  # deliveries in flight at once (to different chats; one chat's stay in order)
    "EVENTS_POLL_SECONDS": 1.0,  # fallback poll of the event sender (it is woken when events are recorded)
    "EVENTS_KEEP_DAYS": 7.0,  # delivered (or given up) events are deleted after this many days
    "IDEMPOTENCY_KEY_HOURS": 24.0,  # an Idempotency-Key and its response are kept this long (at least 24)
}

# Each name: how to convert the environment's string.
_CONVERT = {
    "PORT": int,
    "DEBUG": lambda v: v.strip().lower() in TRUE,
    "VONAGE_SIGNATURE_MAX_AGE": int,
    "VONAGE_TIMEOUT": int,
    "VONAGE_MAX_SENDS_PER_SECOND": float,
    "AUTO_REPLY": lambda v: v.strip().lower() in TRUE,
    "AUTO_REPLY_INTERVAL": int,
    "SEND_END_NOTICE": lambda v: v.strip().lower() in TRUE,
    "MASK_NUMBERS_IN_UI": lambda v: v.strip().lower() in TRUE,
    "OUTBOX_WORKER": lambda v: v.strip().lower() in TRUE,
    "OUTBOX_POLL_SECONDS": float,
    "OUTBOX_MAX_ATTEMPTS": int,
    "OUTBOX_LEASE_SECONDS": int,
    "OUTBOX_RETRY_BASE_SECONDS": float,
    "OUTBOX_RETRY_CAP_SECONDS": float,
    "OUTBOX_RECONCILE_SECONDS": float,
    "OUTBOX_CONCURRENCY": int,
    "MULTIPART_TIMEOUT_SECONDS": float,
    "SESSION_HOURS": float,
    "LOGIN_FREE_ATTEMPTS": int,
    "LOGIN_BASE_DELAY": float,
    "SIMULATED_RECEIPT_SECONDS": float,
    "EVENTS_TIMEOUT_SECONDS": float,
    "EVENTS_RETRY_BASE_SECONDS": float,
    "EVENTS_RETRY_CAP_SECONDS": float,
    "EVENTS_MAX_AGE_SECONDS": float,
    "EVENTS_CONCURRENCY": int,
    "EVENTS_POLL_SECONDS": float,
    "EVENTS_KEEP_DAYS": float,
    "IDEMPOTENCY_KEY_HOURS": float,
}


class ConfigError(RuntimeError):
    """The configuration cannot work; the message says what to set."""


def from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Settings from the environment, converted to their types, over the defaults."""
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for name, default in DEFAULTS.items():
        raw = env.get(name)
        if raw is None or (raw == "" and default != ""):
            continue
        try:
            out[name] = _CONVERT.get(name, str)(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}={raw!r} is not a valid value ({exc})") from None
    if env.get("FLASK_DEBUG", "").lower() in TRUE:
        out.setdefault("DEBUG", True)
    return out


def resolve_gateway(cfg: Mapping[str, Any]) -> str:
    """Which gateway to use: the explicit choice, else vonage when credentials exist."""
    choice = (cfg.get("SMS_GATEWAY") or "").strip().lower()
    if not choice:
        choice = "vonage" if cfg.get("VONAGE_API_KEY") and cfg.get("VONAGE_API_SECRET") else "simulated"
    if choice not in {"vonage", "simulated"}:
        raise ConfigError(f"SMS_GATEWAY must be 'vonage' or 'simulated', not {choice!r}")
    if choice == "vonage" and not (cfg.get("VONAGE_API_KEY") and cfg.get("VONAGE_API_SECRET")):
        raise ConfigError(
            "SMS_GATEWAY=vonage needs VONAGE_API_KEY and VONAGE_API_SECRET "
            "(or unset SMS_GATEWAY to use the simulated gateway)"
        )
    return choice


def check_events(cfg: Mapping[str, Any]) -> None:
    """Event callbacks are signed or not sent at all: EVENTS_URL needs EVENTS_SECRET, and must be http(s)."""
    url = (cfg.get("EVENTS_URL") or "").strip()
    if float(cfg.get("IDEMPOTENCY_KEY_HOURS", 24)) < 24:
        raise ConfigError("IDEMPOTENCY_KEY_HOURS must be at least 24 (keys are promised for 24 h)")
    if not url:
        return
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"EVENTS_URL must be an http:// or https:// URL, not {url!r}")
    if not cfg.get("EVENTS_SECRET"):
        raise ConfigError("EVENTS_URL is set but EVENTS_SECRET is empty: events are only sent signed")
    if float(cfg.get("EVENTS_TIMEOUT_SECONDS", 5)) <= 0:
        raise ConfigError("EVENTS_TIMEOUT_SECONDS must be above 0")
