"""Operator accounts and sign-in: hashed passwords, throttled failures, expiring sessions, sign-out."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from .. import events
from ..extensions import db
from ..models import Operator, utcnow

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

MIN_PASSWORD = 8
MAX_NAME = 60
# A hash to check against when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not-a-real-password")


class AccountError(ValueError):
    """An operator account cannot be created as asked; str() says why."""


def create_operator(name: str, password: str) -> Operator:
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME or any(ch.isspace() for ch in name):
        raise AccountError(f"the name must be 1-{MAX_NAME} characters without spaces")
    if len(password or "") < MIN_PASSWORD:
        raise AccountError(f"the password must be at least {MIN_PASSWORD} characters")
    if db.session.scalar(select(Operator.id).where(Operator.name == name)) is not None:
        raise AccountError(f"an operator named {name!r} already exists")
    operator = Operator(name=name, password_hash=generate_password_hash(password))
    db.session.add(operator)
    db.session.commit()
    log.info("operator %d created", operator.id)
    return operator


def authenticate(name: str, password: str) -> Operator | None:
    operator = db.session.scalar(select(Operator).where(Operator.name == (name or "").strip()))
    ok = check_password_hash(operator.password_hash if operator else _DUMMY_HASH, password or "")
    return operator if operator and ok else None


@dataclass
class _Failures:
    count: int = 0
    blocked_until: float = 0.0


class SignInThrottle:
    """Failed sign-ins per name and per client address; after a few, each further try waits longer
    (doubling, up to `max_delay`). An address gets five times the free tries of a name.

    Kept in memory: a restart forgets it, which is acceptable for slowing down guessing.
    """

    def __init__(self, free_attempts: int = 5, base_delay: float = 2.0, max_delay: float = 300.0) -> None:
        self.free_attempts = free_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._lock = threading.Lock()
        self._seen: dict[str, _Failures] = {}

    def wait_seconds(self, keys: list[str]) -> int:
        now = time.monotonic()
        with self._lock:
            waits = [self._seen[k].blocked_until - now for k in keys if k in self._seen]
        return max([0, *[int(w) + 1 for w in waits if w > 0]])

    def failed(self, keys: list[str]) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                entry = self._seen.setdefault(key, _Failures())
                entry.count += 1
                # one address may be a whole office behind NAT or a reverse proxy: it gets more tries
                free = self.free_attempts * (5 if key.startswith("addr:") else 1)
                extra = entry.count - free
                if extra >= 0:
                    entry.blocked_until = now + min(self.base_delay * 2**extra, self.max_delay)
            if len(self._seen) > 10_000:  # bound memory under a spray of names
                self._seen.clear()

    def succeeded(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self._seen.pop(key, None)


def throttle() -> SignInThrottle:
    app = current_app
    if "signin_throttle" not in app.extensions:
        app.extensions["signin_throttle"] = SignInThrottle(
            free_attempts=app.config.get("LOGIN_FREE_ATTEMPTS", 5),
            base_delay=app.config.get("LOGIN_BASE_DELAY", 2.0),
        )
    return app.extensions["signin_throttle"]


def _safe_next(target: str | None) -> str:
    """Only a path on this site (never //host or a scheme) may be a redirect target."""
    if not target:
        return url_for("dashboard.chats")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("dashboard.chats")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated and request.method == "GET":
        return redirect(_safe_next(request.args.get("next")))
    error = None
    status = 200
    wait = 0
    name = ""
    if request.method == "POST":
        name = (request.form.get("name") or "").strip()[:MAX_NAME]
        keys = [f"name:{name.lower()}", f"addr:{request.remote_addr}"]
        wait = throttle().wait_seconds(keys)
        if wait:
            error = f"Too many failed sign-ins. Try again in {wait} seconds."
            status = 429
        else:
            operator = authenticate(name, request.form.get("password") or "")
            if operator is None:
                throttle().failed(keys)
                log.info("failed sign-in from %s", request.remote_addr)
                error = "That name and password do not match."
                status = 401
            else:
                throttle().succeeded(keys)
                session.clear()
                login_user(operator)
                session.permanent = True  # expires after SESSION_HOURS (PERMANENT_SESSION_LIFETIME)
                operator.last_login_at = utcnow()
                db.session.commit()
                log.info("operator %d signed in", operator.id)
                return redirect(_safe_next(request.args.get("next")))
    resp = render_template("auth/login.html", error=error, name=name)
    return resp, status, ({"Retry-After": str(wait)} if status == 429 else {})


@bp.post("/logout")
@login_required
def logout():
    operator_id = current_user.get_id()
    logout_user()
    session.clear()
    # open sockets keep the session from connect time: live.py closes them
    events.announce(events.operator_signed_out, operator_id=operator_id)
    return redirect(url_for("auth.login"))
