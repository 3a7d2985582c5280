"""Configuration: defaults, and `from_env()`, the only place that reads os.environ.

Every setting has a safe default so `python -m webapp` runs on a fresh machine: SQLite under
`instance/`, the simulated SMS gateway, port 3000.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

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
    "WEB_THREADS": 100,  # python -m webapp: threads of the web process (open websockets + requests in flight)
    "OUTBOX_WORKER": True,
    "OUTBOX_PROCESS": True,  # python -m webapp: the outbox in a process of its own (both cores), else in threads
    "OUTBOX_POLL_SECONDS": 1.0,
    "OUTBOX_MAX_ATTEMPTS": 12,
    "OUTBOX_LEASE_SECONDS": 15,  # a worker holds a lane this long at most (at least VONAGE_TIMEOUT + 2)
    "OUTBOX_RETRY_BASE_SECONDS": 0.2,  # first retry after ~base s, doubling (full jitter) up to the cap
    "OUTBOX_RETRY_CAP_SECONDS": 300.0,
    # An interrupted or unanswered send waits this long (from its claim) for a receipt carrying its client-ref,
    # then is sent again (at-least-once with reconciliation). 0: never resend it automatically (at-most-once).
    "OUTBOX_RECONCILE_SECONDS": 20,
    "OUTBOX_CONCURRENCY": 8,  # lanes sent in parallel (one keep-alive connection each), under the rate limit
    "OUTBOX_LANE_BATCH": 20,  # texts to one person sent per claim, one after another, settled together
    "RATE_LIMIT_REDIS_URL": "",  # empty: per-process limiter; redis://...: shared by every worker process
    "MULTIPART_TIMEOUT_SECONDS": 300,  # an incomplete multipart SMS is relayed with a marker after this
    "SOCKETIO_MESSAGE_QUEUE": "",
    "SOCKETIO_CHANNEL": "flask-socketio",  # Redis pub/sub channel; processes of one deployment share it
    "SESSION_HOURS": 12,
    "LOGIN_FREE_ATTEMPTS": 5,  # failed sign-ins per name before each further try is slowed down
    "LOGIN_BASE_DELAY": 2.0,  # seconds of the first slow-down; doubles with each further failure
    "SIMULATED_RECEIPT_SECONDS": 1.0,  # simulated gateway: delay before a "delivered" receipt; 0 = none
    "LOG_LEVEL": "INFO",
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
    "WEB_THREADS": lambda v: max(int(v), 1),
    "OUTBOX_WORKER": lambda v: v.strip().lower() in TRUE,
    "OUTBOX_PROCESS": lambda v: v.strip().lower() in TRUE,
    "OUTBOX_POLL_SECONDS": float,
    "OUTBOX_MAX_ATTEMPTS": int,
    "OUTBOX_LEASE_SECONDS": int,
    "OUTBOX_RETRY_BASE_SECONDS": float,
    "OUTBOX_RETRY_CAP_SECONDS": float,
    "OUTBOX_RECONCILE_SECONDS": float,
    "OUTBOX_CONCURRENCY": int,
    "OUTBOX_LANE_BATCH": int,
    "MULTIPART_TIMEOUT_SECONDS": float,
    "SESSION_HOURS": float,
    "LOGIN_FREE_ATTEMPTS": int,
    "LOGIN_BASE_DELAY": float,
    "SIMULATED_RECEIPT_SECONDS": float,
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
