"""Start-time checks (API_TOKEN), cookie settings (SESSION_COOKIE_SECURE), the CSRF failure page, and wrong
bearer tokens slowed down.

Repros from the issue: `API_TOKEN=a` was accepted silently and wrong tokens were never slowed; over plain HTTP
on a host name other than localhost, sign-in failed with a bare "The CSRF session token is missing" page.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import app_config
from tests.test_auth import PASSWORD, csrf_of, fresh_g_per_request
from webapp import create_app
from webapp.config import ConfigError, from_env
from webapp.extensions import db
from webapp.services.operators import create_operator

from .conftest import server_env

ENTRY_POINTS = {
    "python -m webapp": [sys.executable, "-m", "webapp"],
    "gunicorn": [sys.executable, "-m", "gunicorn", "-w", "1", "--threads", "4", "--no-control-socket",
                 "-b", "127.0.0.1:0", "webapp.wsgi:app"],
    "flask": [sys.executable, "-m", "flask", "--app", "webapp", "operators", "list"],
}


@pytest.mark.parametrize("token", ["a", "x" * 31])
def test_a_short_api_token_refuses_to_start_naming_the_variable(tmp_path, token):
    with pytest.raises(ConfigError, match="API_TOKEN"):
        create_app(app_config(tmp_path, API_TOKEN=token))
    # DEBUG may run with one (a warning is logged); an empty token disables the API instead
    assert create_app(app_config(tmp_path, API_TOKEN=token, DEBUG=True)).config["API_TOKEN"] == token
    assert create_app(app_config(tmp_path, API_TOKEN="")).config["API_TOKEN"] == ""
    assert create_app(app_config(tmp_path, API_TOKEN="x" * 32))


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_every_entry_point_refuses_a_short_api_token(tmp_path, entry):
    env = server_env(tmp_path, API_TOKEN="a", PORT="0")
    proc = subprocess.run(ENTRY_POINTS[entry], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "API_TOKEN" in proc.stderr and "at least 32" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr or entry == "flask"


def test_wrong_bearer_tokens_are_slowed_down(client, api_headers):
    wrong = {"Authorization": "Bearer " + "w" * 40}
    statuses = [client.get("/api/chats", headers=wrong).status_code for _ in range(10)]
    assert statuses == [401] * 10
    slowed = client.get("/api/chats", headers=wrong)
    assert slowed.status_code == 429 and int(slowed.headers["Retry-After"]) >= 1
    # while that address waits, no token from it is checked, not even the right one
    assert client.get("/api/chats", headers=api_headers).status_code == 429
    # another address is not affected
    other = client.get("/api/chats", headers=api_headers, environ_base={"REMOTE_ADDR": "192.0.2.1"})
    assert other.status_code == 200


def test_session_cookie_secure_defaults_to_true_unless_debug(tmp_path):
    assert from_env({"SESSION_COOKIE_SECURE": "false"}) == {"SESSION_COOKIE_SECURE": False}
    assert from_env({"SESSION_COOKIE_SECURE": ""}) == {}
    assert create_app(app_config(tmp_path)).config["SESSION_COOKIE_SECURE"] is True
    assert create_app(app_config(tmp_path, DEBUG=True)).config["SESSION_COOKIE_SECURE"] is False
    assert create_app(app_config(tmp_path, SESSION_COOKIE_SECURE=False)).config["SESSION_COOKIE_SECURE"] is False
    assert create_app(app_config(tmp_path, DEBUG=True, SESSION_COOKIE_SECURE=True)).config["SESSION_COOKIE_SECURE"]


def lan_sign_in(app, host: str) -> tuple:
    """Sign in as a browser does over http://<host>/: it does not send a Secure cookie back over plain HTTP."""
    fresh_g_per_request(app)
    client = app.test_client()
    base = {"base_url": f"http://{host}"}
    page = client.get("/login", **base)
    if app.config["SESSION_COOKIE_SECURE"] and host not in ("localhost", "127.0.0.1"):
        client.delete_cookie("session", domain=host)  # what the browser keeps to itself
    resp = client.post("/login", data={"name": "dispatcher", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
                       **base)
    return client, resp


def test_over_plain_http_on_a_lan_host_the_csrf_page_explains_the_secure_cookie(app):
    create_operator("dispatcher", PASSWORD)
    _client, resp = lan_sign_in(app, "dispatch.lan")
    assert resp.status_code == 400
    assert "SESSION_COOKIE_SECURE=false" in resp.text and "https://" in resp.text
    assert "The CSRF session token is missing" in resp.text  # what went wrong, then how to fix it


@pytest.mark.parametrize("app_overrides", [{"SESSION_COOKIE_SECURE": False}])
def test_with_session_cookie_secure_false_a_plain_http_lan_signs_in(app):
    create_operator("dispatcher", PASSWORD)
    client, resp = lan_sign_in(app, "dispatch.lan")
    assert resp.status_code == 302
    assert "Secure" not in resp.headers["Set-Cookie"]
    assert client.get("/", base_url="http://dispatch.lan").status_code == 200


def test_an_expired_form_explains_itself_too(app, client):
    create_operator("dispatcher", PASSWORD)
    resp = client.post("/login", data={"name": "dispatcher", "password": PASSWORD, "csrf_token": "stale"})
    assert resp.status_code == 400 and "reload the page" in resp.text.lower()
    htmx = client.post("/chats", data={}, headers={"HX-Request": "true"})
    assert htmx.status_code in (400, 401)
    db.session.remove()
