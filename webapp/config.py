"""Configuration: defaults, and `from_env()`, the only place that reads os.environ.

Every setting has a safe default so `python -m webapp` runs on a fresh machine: SQLite under
`instance/`, the simulated SMS gateway, port 3000.
"""

from __future__ import annotations

import os
import re
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
    # Shared secret for webhooks when Vonage has not enabled signing: `?token=<WEBHOOK_TOKEN>` on the URLs.
    "WEBHOOK_TOKEN": "",
    # SMS_GATEWAY=vonage refuses to start while webhooks would be accepted unauthenticated, unless this says so.
    "WEBHOOKS_ALLOW_UNSIGNED": False,
    "VONAGE_REST_HOST": "rest.nexmo.com",
    "VONAGE_API_HOST": "api.nexmo.com",
    "VONAGE_TIMEOUT": 10,
    "VONAGE_MAX_SENDS_PER_SECOND": 30.0,
    "PROXY_NUMBERS": "",
    "DEFAULT_REGION": "GB",
    "API_TOKEN": "",
    "AUTO_REPLY": True,
    "AUTO_REPLY_INTERVAL": 3600,
    "AUTO_REPLY_MAX_PER_HOUR": 60,  # all auto-replies together, in any 60 minutes
    "AUTO_REPLY_COUNTRIES": "",  # ISO codes (US,GB); empty: the countries of the pool's numbers
    "SEND_END_NOTICE": True,
    "INTRO_TEMPLATE": (
        "You're now connected with {other}. Reply to this number to message them; "
        "your own number stays private."
    ),
    "END_TEMPLATE": "This conversation has ended. Messages to this number are no longer forwarded.",
    "AUTO_REPLY_TEMPLATE": "This number is not in an active conversation.",
    "OPT_OUT_TEMPLATE": "The other person has left this conversation.",
    "OPT_IN_TEMPLATE": "You will get texts from this number again. Reply STOP to opt out.",
    "LABEL_DEFAULT": "your contact",
    "CHAT_TTL_SECONDS": 0,  # a new chat ends this long after it started; 0 = no time limit
    "CHAT_IDLE_SECONDS": 0,  # a new chat ends after this long without a text from either party; 0 = never
    "RETENTION_DAYS": 0,  # clear message texts of chats ended this many days ago; 0 = keep forever
    "REDACT_CONTACTS": False,  # replace phone numbers and e-mail addresses inside relayed texts
    "MASK_NUMBERS_IN_UI": True,
    "ALLOW_FIXED_LINE": False,  # true: pair landline numbers too (refused by default: they cannot get texts)
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
    "SESSION_COOKIE_SECURE": None,  # None: true unless DEBUG
    "TRUSTED_PROXIES": 0,  # reverse-proxy hops in front of the app whose X-Forwarded-* headers are believed
    "SOCKETIO_ALLOWED_ORIGINS": "",  # extra origins allowed to open sockets; empty: same origin only
    "SOCKETIO_MAX_PER_OPERATOR": 10,  # open live connections (tabs) per signed-in operator, per process
    "SOCKETIO_MAX_CONNECTIONS": 50,  # open live connections per process; keep below gunicorn's --threads
    "LOGIN_FREE_ATTEMPTS": 5,  # failed sign-ins per name before each further try is slowed down
    "LOGIN_BASE_DELAY": 2.0,  # seconds of the first slow-down; doubles with each further failure
    "SIMULATED_RECEIPT_SECONDS": 1.0,  # simulated gateway: delay before a "delivered" receipt; 0 = none
    "SIMULATED_FAILING_NUMBERS": "",  # simulated gateway: "+447700900999:6,...": receipts say failed (err-code)
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

def _not_negative(value: int) -> int:
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


_FAILING_NUMBER = re.compile(r"^\+?[1-9][0-9]{6,14}(:[0-9]{1,4})?$")


def _failing_numbers(value: str) -> str:
    """SIMULATED_FAILING_NUMBERS: "+447700900999:6,+447700900998" (numbers in E.164, each with an err-code)."""
    for item in filter(None, (i.strip() for i in value.split(","))):
        if not _FAILING_NUMBER.match(item):
            raise ValueError(f"{item!r}: write each as an E.164 number, optionally with :err-code (+447700900999:6)")
    return value


# Each name: how to convert the environment's string.
_CONVERT = {
    "PORT": int,
    "DEBUG": lambda v: v.strip().lower() in TRUE,
    "VONAGE_SIGNATURE_MAX_AGE": int,
    "VONAGE_TIMEOUT": int,
    "VONAGE_MAX_SENDS_PER_SECOND": float,
    "AUTO_REPLY": lambda v: v.strip().lower() in TRUE,
    "AUTO_REPLY_INTERVAL": int,
    "AUTO_REPLY_MAX_PER_HOUR": int,
    "SEND_END_NOTICE": lambda v: v.strip().lower() in TRUE,
    "CHAT_TTL_SECONDS": lambda v: _not_negative(int(v)),
    "CHAT_IDLE_SECONDS": lambda v: _not_negative(int(v)),
    "RETENTION_DAYS": lambda v: _not_negative(int(v)),
    "REDACT_CONTACTS": lambda v: v.strip().lower() in TRUE,
    "MASK_NUMBERS_IN_UI": lambda v: v.strip().lower() in TRUE,
    "ALLOW_FIXED_LINE": lambda v: v.strip().lower() in TRUE,
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
    "SESSION_COOKIE_SECURE": lambda v: v.strip().lower() in TRUE,
    "TRUSTED_PROXIES": int,
    "SOCKETIO_MAX_PER_OPERATOR": int,
    "SOCKETIO_MAX_CONNECTIONS": int,
    "WEBHOOKS_ALLOW_UNSIGNED": lambda v: v.strip().lower() in TRUE,
    "LOGIN_FREE_ATTEMPTS": int,
    "LOGIN_BASE_DELAY": float,
    "SIMULATED_RECEIPT_SECONDS": float,
    "SIMULATED_FAILING_NUMBERS": _failing_numbers,
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


MIN_API_TOKEN = 32


def security_problems(cfg: Mapping[str, Any]) -> list[str]:
    """What makes this configuration unsafe to serve; each entry names the variables to set.

    Checked by `create_app`, so every entry point (`python -m webapp`, `webapp.wsgi`, `flask ...`) refuses
    to start with the same words (README, Security).
    """
    problems: list[str] = []
    token = cfg.get("API_TOKEN") or ""
    if token and len(token) < MIN_API_TOKEN and not cfg.get("DEBUG"):
        problems.append(
            f"API_TOKEN is {len(token)} characters long; it must have at least {MIN_API_TOKEN} "
            "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'), "
            "or leave it empty to disable the JSON API"
        )
    gateway = (cfg.get("SMS_GATEWAY") or "").strip().lower()
    authenticated = cfg.get("VONAGE_SIGNATURE_SECRET") or cfg.get("WEBHOOK_TOKEN")
    if gateway == "vonage" and not authenticated and not cfg.get("WEBHOOKS_ALLOW_UNSIGNED"):
        problems.append(
            "SMS_GATEWAY=vonage with neither VONAGE_SIGNATURE_SECRET nor WEBHOOK_TOKEN set would let anyone "
            "post texts and delivery receipts as Vonage; set VONAGE_SIGNATURE_SECRET (signed webhooks) or "
            "WEBHOOK_TOKEN (and add ?token=... to the webhook URLs), or set WEBHOOKS_ALLOW_UNSIGNED=true "
            "to accept unsigned webhooks on purpose"
        )
    for name in ("TRUSTED_PROXIES", "AUTO_REPLY_MAX_PER_HOUR", "SOCKETIO_MAX_PER_OPERATOR", "SOCKETIO_MAX_CONNECTIONS"):
        if int(cfg.get(name) or 0) < 0:
            problems.append(f"{name} must not be negative")
    return problems


def check_security(cfg: Mapping[str, Any]) -> None:
    """Raise ConfigError naming every unsafe setting (see `security_problems`)."""
    problems = security_problems(cfg)
    if problems:
        raise ConfigError("; ".join(problems))


def startup_warnings(cfg: Mapping[str, Any]) -> list[str]:
    """Settings that work but deserve a line in the log at start."""
    out: list[str] = []
    if not cfg.get("API_TOKEN"):
        out.append("API_TOKEN is empty: the JSON API is disabled (every /api call answers 503)")
    elif len(cfg["API_TOKEN"]) < MIN_API_TOKEN:
        out.append(f"API_TOKEN is shorter than {MIN_API_TOKEN} characters (accepted only because DEBUG is on)")
    if not cfg.get("VONAGE_SIGNATURE_SECRET") and not cfg.get("WEBHOOK_TOKEN"):
        out.append(
            "VONAGE_SIGNATURE_SECRET is empty and WEBHOOK_TOKEN is unset: webhooks are accepted unsigned, so "
            "anyone who can reach /webhooks/ can post texts as any sender (README, Security)"
        )
    if cfg.get("SESSION_COOKIE_SECURE") is False and not cfg.get("DEBUG"):
        out.append("SESSION_COOKIE_SECURE=false: the sign-in cookie also travels over plain HTTP")
    return out


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
