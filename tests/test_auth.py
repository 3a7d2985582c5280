"""Sign-in, sessions, CSRF and the guard on every route; Socket.IO refuses anonymous connections."""

from __future__ import annotations

import re
import time

import pytest
from flask import Flask, g
from sqlalchemy import select
from werkzeug.routing.converters import NumberConverter
from werkzeug.security import check_password_hash

from tests.conftest import app_config
from webapp import create_app, prepare_database
from webapp.dashboard.auth import create_operator
from webapp.extensions import db, socketio
from webapp.models import Operator

PASSWORD = "correct horse battery"
CSRF_RE = re.compile(r'name="csrf-token" content="([^"]+)"')

# What needs no dashboard session: its own auth (webhooks: signature; API: bearer token), health, static, sign-in.
PUBLIC = {"static", "healthz", "auth.login", "favicon"}
OWN_AUTH_BLUEPRINTS = {"webhooks", "api"}


def csrf_of(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "page has no csrf-token meta tag"
    return match.group(1)


def sign_in(client, name: str = "dispatcher", password: str = PASSWORD, next_url: str | None = None):
    token = csrf_of(client.get("/login").text)
    url = "/login" + (f"?next={next_url}" if next_url else "")
    return client.post(url, data={"name": name, "password": password, "csrf_token": token})


def fresh_g_per_request(app: Flask) -> None:
    """The shared `app` fixture keeps one app context open, so requests would share `g` (Flask-WTF's
    token and Flask-Login's user are cached there). In a server every request has its own; do the same."""

    def _fresh_g() -> None:
        for key in ("csrf_token", "_login_user"):
            g.pop(key, None)

    app.before_request_funcs.setdefault(None, []).insert(0, _fresh_g)  # before the sign-in guard


@pytest.fixture
def client(app: Flask):
    fresh_g_per_request(app)
    return app.test_client()


@pytest.fixture
def operator(app: Flask) -> Operator:
    return create_operator("dispatcher", PASSWORD)


def _example_url(rule) -> str:
    values = {}
    for arg in rule.arguments:
        numeric = isinstance(rule._converters[arg], NumberConverter)
        values[arg] = 1 if numeric else "447700900111"
    return rule.build(values, append_unknown=False)[1]


def test_every_route_but_webhooks_api_health_and_static_requires_a_session(tmp_path):
    # CSRF off here so that POST routes reach the sign-in guard rather than stopping at the CSRF check
    app = create_app(app_config(tmp_path, WTF_CSRF_ENABLED=False))
    prepare_database(app)
    client = app.test_client()
    checked = []
    for rule in app.url_map.iter_rules():
        blueprint = rule.endpoint.split(".", 1)[0] if "." in rule.endpoint else None
        if rule.endpoint in PUBLIC or blueprint in OWN_AUTH_BLUEPRINTS:
            continue
        url = _example_url(rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            resp = client.open(url, method=method)
            if method == "GET":
                assert resp.status_code == 302, (rule.endpoint, resp.status_code)
                assert resp.headers["Location"].startswith("/login"), rule.endpoint
            else:
                assert resp.status_code == 401, (rule.endpoint, method, resp.status_code)
                # RFC 9110 §11.6.1: a 401 carries a challenge
                assert resp.headers["WWW-Authenticate"].startswith("Cookie realm="), rule.endpoint
            htmx = client.open(url, method=method, headers={"HX-Request": "true"})
            assert htmx.status_code == 401 and htmx.headers["HX-Redirect"] == "/login", rule.endpoint
            assert htmx.headers["WWW-Authenticate"].startswith("Cookie realm="), rule.endpoint
            checked.append(rule.endpoint)
    # the walk really covered the dashboard, its fragments and the simulator
    for endpoint in ("dashboard.chats", "dashboard.chat_transcript", "dashboard.pair", "dashboard.end",
                     "dashboard.unrouted", "dashboard.numbers", "simulator.index", "simulator.send", "auth.logout",
                     "admin.operators", "admin.add_number", "admin.remove_number", "admin.operator_action"):
        assert endpoint in checked
    with app.app_context():
        db.engine.dispose()


def test_health_webhooks_and_api_need_no_session(client, api_headers):
    assert client.get("/healthz").status_code == 200
    resp = client.post("/webhooks/inbound-sms", data={"msisdn": "447700900999", "to": "447700900001", "text": "hi"})
    assert resp.status_code == 204
    assert client.get("/api/chats", headers=api_headers).status_code == 200
    assert client.get("/static/js/app.js").status_code == 200


def test_sign_in_with_the_right_password_then_sign_out(client, operator):
    assert client.get("/").status_code == 302
    wrong = sign_in(client, password="nope nope nope")
    # the form again with the error: 200, not a 401 document (a console error in the browser)
    assert wrong.status_code == 200 and "do not match" in wrong.text
    resp = sign_in(client)
    assert resp.status_code == 302 and resp.headers["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200 and "dispatcher" in page.text
    # sign-out is a POST with a CSRF token; GET is not allowed (no sign-out by a stray link)
    assert client.get("/logout").status_code == 405
    out = client.post("/logout", data={"csrf_token": csrf_of(page.text)})
    assert out.status_code == 302 and out.headers["Location"] == "/login"
    assert client.get("/").status_code == 302


def test_unknown_operator_is_refused_like_a_wrong_password(client, operator):
    resp = sign_in(client, name="nobody")
    assert resp.status_code == 200 and "do not match" in resp.text


def test_next_parameter_cannot_redirect_off_site(client, operator):
    assert sign_in(client, next_url="//evil.example/x").headers["Location"] == "/"
    client.post("/logout", data={"csrf_token": csrf_of(client.get("/").text)})
    assert sign_in(client, next_url="/numbers").headers["Location"] == "/numbers"


def test_repeated_failed_sign_ins_are_slowed_down(client, operator):
    for _ in range(5):
        assert "do not match" in sign_in(client, password="wrong-password").text
    # the fifth failure starts a wait; during it even the right password is not checked
    blocked = sign_in(client)
    assert blocked.status_code == 429
    assert "Too many failed sign-ins" in blocked.text
    assert int(blocked.headers["Retry-After"]) >= 1
    assert client.get("/").status_code == 302


def test_failures_on_one_name_do_not_lock_out_another_operator_at_the_same_address(client, operator):
    create_operator("second", PASSWORD)
    for _ in range(5):
        sign_in(client, password="wrong-password")
    assert sign_in(client).status_code == 429
    assert sign_in(client, name="second").status_code == 302


def test_the_session_expires_after_session_hours(client, operator, monkeypatch):
    sign_in(client)
    assert client.get("/").status_code == 200
    hours = client.application.config["SESSION_HOURS"]
    later = time.time() + hours * 3600 + 60
    monkeypatch.setattr(time, "time", lambda: later)  # the signed cookie's timestamp is now too old
    assert client.get("/").status_code == 302


def test_csrf_is_required_on_dashboard_forms_and_htmx_requests(client, operator):
    sign_in(client)
    page = client.get("/").text
    form = {"a": "+447700900111", "b": "+447700900222"}
    assert client.post("/chats", data=form, headers={"HX-Request": "true"}).status_code == 400
    ok = client.post("/chats", data=form, headers={"HX-Request": "true", "X-CSRFToken": csrf_of(page)})
    assert ok.status_code == 200 and "started" in ok.text


def test_cookies_are_secure_outside_debug(tmp_path):
    app = create_app({**app_config(tmp_path), "TESTING": False, "DEBUG": False})
    prepare_database(app)
    fresh_g_per_request(app)
    assert app.config["SESSION_COOKIE_SECURE"] is True
    with app.app_context():
        create_operator("dispatcher", PASSWORD)
    client = app.test_client()
    resp = sign_in(client)
    cookie = resp.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Expires=" in cookie
    with app.app_context():
        db.engine.dispose()


def test_pages_carry_a_strict_csp_and_no_inline_script(client, operator):
    sign_in(client)
    for url in ("/", "/numbers", "/unrouted", "/simulator/", "/login"):
        resp = client.get(url)
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        html = resp.text
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), url  # every script is a static file
        assert " hx-on" not in html and "javascript:" not in html and " style=" not in html, url
        assert "cdn" not in html.lower(), url


def test_socketio_refuses_anonymous_and_serves_operators(app, client, operator, api_headers):
    anonymous = socketio.test_client(app)
    assert not anonymous.is_connected()
    sign_in(client)
    live = socketio.test_client(app, flask_test_client=client)
    assert live.is_connected()
    client.post("/api/chats", json={"a": "+447700900111", "b": "+447700900222"}, headers=api_headers)
    events = live.get_received()
    assert {"name": "chats_changed", "args": [{"chat_id": 1, "change": "created"}], "namespace": "/"} in events
    # signing out closes the operator's open socket (it kept the session from connect time)
    client.post("/logout", data={"csrf_token": csrf_of(client.get("/").text)})
    assert not live.is_connected()


def test_cli_creates_operators_with_a_password_from_stdin(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["operators", "create", "maria"], input="s3cret-password\n")
    assert result.exit_code == 0, result.output
    op = db.session.scalar(select(Operator).where(Operator.name == "maria"))
    assert op is not None and op.password_hash != "s3cret-password"
    assert op.password_hash.startswith(("scrypt:", "pbkdf2:"))
    again = runner.invoke(args=["operators", "create", "maria", "--password-stdin"], input="another-password\n")
    assert again.exit_code != 0 and "already exists" in again.output
    short = runner.invoke(args=["operators", "create", "tom"], input="short\n")
    assert short.exit_code != 0 and "at least 8" in short.output
    listed = runner.invoke(args=["operators", "list"])
    assert "maria" in listed.output


def test_cli_states_the_password_rule_and_checks_it_before_the_confirmation(app, monkeypatch):
    """On a terminal: the prompt names the rule; a short password is refused at once (not after typing it
    twice) and asked for again; a mismatched confirmation starts over; then the account is created."""
    monkeypatch.setattr("webapp.cli._stdin_is_terminal", lambda: True)
    typed = "short\nlong-enough-pw\nmistyped-pw\nlong-enough-pw\nlong-enough-pw\n"
    result = app.test_cli_runner().invoke(args=["operators", "create", "sam", "--admin"], input=typed)
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines() if line.strip()]
    assert lines == [
        "Password (at least 8 characters):",
        "Error: the password must be at least 8 characters",
        "Password (at least 8 characters):",  # asked again at once: no confirmation for a refused password
        "Repeat the password:",
        "Error: the two entries do not match. Try again.",
        "Password (at least 8 characters):",
        "Repeat the password:",
        "operator 'sam' created (admin)",
    ]
    op = db.session.scalar(select(Operator).where(Operator.name == "sam"))
    assert op.is_admin and check_password_hash(op.password_hash, "long-enough-pw")


def test_a_request_in_flight_during_sign_out_does_not_sign_the_browser_back_in(client, operator):
    sign_in(client)
    page = client.get("/")
    old_cookie = client.get_cookie("session").value
    # a fragment refresh sent with the old cookie, answered after the sign-out response...
    client.post("/logout", data={"csrf_token": csrf_of(page.text)})
    client.set_cookie("session", old_cookie)
    late = client.get("/fragments/nav", headers={"HX-Request": "true"})
    # ...must not send the session cookie again (the browser keeps the cleared one)
    assert "Set-Cookie" not in late.headers
