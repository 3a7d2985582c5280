"""Sign-in and sign-out: throttled password checks, server-side sessions (services/operators.py).

A failed sign-in answers 200 with the error on the form (a 401 page is a console error in the browser and
means nothing to a person); a throttled one answers 429 with Retry-After.

Throttle (webapp/throttle.py), per process:
- per name: LOGIN_FREE_ATTEMPTS tries, reserved before the password is checked (so parallel tries cannot all
  be checked), then waits from LOGIN_BASE_DELAY seconds, doubling;
- per client address (behind TRUSTED_PROXIES reverse proxies: the client's): five times as many failures, and
  only failures on names that exist count, so a spray of made-up names never locks a real operator out.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from ..admission import SESSION_KEY
from ..services.operators import (
    MAX_NAME,
    MIN_PASSWORD,
    authenticate,
    count_operators,
    end_session,
    operator_exists,
    start_session,
)
from ..services.operators import create_operator as create_operator
from ..throttle import FailureThrottle, Key

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

ADDRESS_FACTOR = 5  # an address (NAT, an office) gets this many times the free tries of one name


def throttle() -> FailureThrottle:
    app = current_app
    if "signin_throttle" not in app.extensions:
        app.extensions["signin_throttle"] = FailureThrottle(base_delay=float(app.config.get("LOGIN_BASE_DELAY", 2.0)))
    return app.extensions["signin_throttle"]


def _keys(name: str) -> tuple[Key, Key]:
    free = int(current_app.config.get("LOGIN_FREE_ATTEMPTS", 5))
    return (
        Key(f"name:{name.lower()}", free, reserve=True),
        Key(f"addr:{request.remote_addr}", free * ADDRESS_FACTOR),
    )


def _safe_next(target: str | None) -> str:
    """Only a path on this site (never //host or a scheme) may be a redirect target."""
    if not target:
        return url_for("dashboard.chats")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("dashboard.chats")
    return target


def _page(error: str | None = None, name: str = "", status: int = 200, headers: dict | None = None):
    first_run = count_operators() == 0
    html = render_template("auth/login.html", error=error, name=name, first_run=first_run, min_password=MIN_PASSWORD)
    return html, status, headers or {}


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated and request.method == "GET":
        return redirect(_safe_next(request.args.get("next")))
    if request.method == "GET":
        return _page()
    name = (request.form.get("name") or "").strip()[:MAX_NAME]
    keys = _keys(name)
    wait = throttle().acquire(keys)
    if wait:
        return _page(
            f"Too many failed sign-ins. Try again in {wait} seconds.", name, 429, {"Retry-After": str(wait)}
        )
    operator = None
    try:
        operator = authenticate(name, request.form.get("password") or "")
    finally:
        if operator is None:
            # the address only counts failures on real names: made-up names cannot lock a real operator out
            exists = operator_exists(name)
            counted = [k.name for k in keys] if exists else [keys[0].name]
            throttle().release(keys, failed=True, count=counted, precious=exists)
        else:
            throttle().release(keys, failed=False)
    if operator is None:
        log.info("failed sign-in from %s", request.remote_addr)
        return _page("That name and password do not match.", name)
    if not operator.is_active:
        log.info("sign-in of disabled operator %d refused", operator.id)
        return _page("This account is disabled. Ask an administrator to enable it.", name)
    previous = session.get(SESSION_KEY)
    if previous:
        end_session(previous)  # signing in again in this browser ends its earlier session (and any copy)
    session.clear()
    login_user(operator)
    session[SESSION_KEY] = start_session(operator)
    session.permanent = True  # expires after SESSION_HOURS (PERMANENT_SESSION_LIFETIME), like its row
    log.info("operator %d signed in from %s", operator.id, request.remote_addr)
    return redirect(_safe_next(request.args.get("next")))


@bp.post("/logout")
@login_required
def logout():
    key = session.get(SESSION_KEY)
    logout_user()
    session.clear()
    end_session(key)  # the row goes: a copy of the cookie signs nobody in; this session's sockets close
    return redirect(url_for("auth.login"))
