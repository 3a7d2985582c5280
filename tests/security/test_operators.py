"""Operator accounts and sessions that really end: sign-out revokes the session server-side (a copied cookie
then redirects to /login), `flask operators disable/enable/reset-password/promote/demote`, and a disabled
operator's sessions and sockets stop at once. The issue's repro: a cookie copied before sign-out still loaded
pages, created chats and opened a socket 20 minutes and six restarts later."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import func, select

from tests.test_auth import PASSWORD, csrf_of, fresh_g_per_request, sign_in
from webapp import create_app, live
from webapp.extensions import db, socketio
from webapp.models import Chat, Operator, OperatorSession
from webapp.services import Conflict, InvalidInput, NotFound
from webapp.services import operators as accounts

PAIR = {"a": "+447700900111", "b": "+447700900222"}


@pytest.fixture
def client(app: Flask):
    fresh_g_per_request(app)
    return app.test_client()


@pytest.fixture
def operator(app: Flask) -> Operator:
    return accounts.create_operator("dispatcher", PASSWORD)


def sessions() -> int:
    return db.session.scalar(select(func.count()).select_from(OperatorSession))


def test_sign_out_ends_the_session_a_copied_cookie_is_worthless(app, client, operator):
    sign_in(client)
    copied = client.get_cookie("session").value
    page = client.get("/")
    assert page.status_code == 200 and sessions() == 1
    client.post("/logout", data={"csrf_token": csrf_of(page.text)})
    assert sessions() == 0
    thief = app.test_client()
    thief.set_cookie("session", copied)
    resp = thief.get("/")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/login")
    # nor can it act: pairing with the copied cookie is refused (htmx: 401 and a redirect to the sign-in page)
    pair = thief.post("/chats", data=PAIR, headers={"HX-Request": "true"})
    assert pair.status_code in (400, 401)
    assert db.session.scalar(select(func.count()).select_from(Chat)) == 0
    assert not socketio.test_client(app, flask_test_client=thief).is_connected()


def test_the_copied_cookie_stays_dead_after_a_restart(app, client, operator, tmp_path):
    sign_in(client)
    copied = client.get_cookie("session").value
    client.post("/logout", data={"csrf_token": csrf_of(client.get("/").text)})
    again = create_app({**app.config, "SQLALCHEMY_ENGINE_OPTIONS": {}})  # same secret key and database
    fresh_g_per_request(again)
    with again.app_context():
        thief = again.test_client()
        thief.set_cookie("session", copied)
        assert thief.get("/").status_code == 302
        db.session.remove()
        db.engine.dispose()


def test_one_sign_out_leaves_the_operators_other_sessions(app, client, operator):
    sign_in(client)
    other = app.test_client()
    sign_in(other)
    assert sessions() == 2
    client.post("/logout", data={"csrf_token": csrf_of(client.get("/").text)})
    assert other.get("/").status_code == 200
    assert client.get("/").status_code == 302


def test_disabling_ends_every_session_and_socket_at_once_and_blocks_sign_in(app, client, operator):
    sign_in(client)
    sock = socketio.test_client(app, flask_test_client=client)
    assert sock.is_connected()
    accounts.disable_operator("dispatcher")
    assert not sock.is_connected()
    assert client.get("/").status_code == 302 and sessions() == 0
    refused = sign_in(client)
    assert refused.status_code == 200 and "disabled" in refused.text
    assert client.get("/").status_code == 302
    accounts.enable_operator("dispatcher")
    assert sign_in(client).status_code == 302 and client.get("/").status_code == 200


def test_a_disable_made_elsewhere_closes_sockets_on_the_next_recheck(app, client, operator, monkeypatch):
    """`flask operators disable` runs in another process: this one learns it from the database."""
    sign_in(client)
    sock = socketio.test_client(app, flask_test_client=client)
    assert sock.is_connected()
    # as if done in another process: this one hears no event, only the database knows
    monkeypatch.setattr(accounts.events, "announce", lambda *args, **kwargs: None)
    accounts.disable_operator("dispatcher")
    assert sock.is_connected()
    assert live.recheck_sockets(app) == 1
    assert not sock.is_connected()
    assert live.recheck_sockets(app) == 0


def test_reset_password_ends_sessions_and_only_the_new_password_works(app, client, operator):
    sign_in(client)
    accounts.reset_password("dispatcher", "a brand new password")
    assert client.get("/").status_code == 302
    assert "do not match" in sign_in(client).text
    assert sign_in(client, password="a brand new password").status_code == 302


def test_account_use_cases_raise_service_errors_with_clear_messages(app, operator):
    with pytest.raises(Conflict, match="already exists"):
        accounts.create_operator("dispatcher", PASSWORD)
    with pytest.raises(InvalidInput, match="at least 8"):
        accounts.create_operator("tom", "short")
    with pytest.raises(InvalidInput, match="without spaces"):
        accounts.create_operator("two words", PASSWORD)
    for use_case in (accounts.disable_operator, accounts.enable_operator):
        with pytest.raises(NotFound, match="no operator named 'ghost'"):
            use_case("ghost")
    with pytest.raises(NotFound):
        accounts.reset_password("ghost", PASSWORD)
    with pytest.raises(InvalidInput, match="at least 8"):
        accounts.reset_password("dispatcher", "short")
    with pytest.raises(NotFound):
        accounts.set_admin("ghost", True)
    admin = accounts.create_operator("boss", PASSWORD, admin=True)
    assert admin.is_admin and not operator.is_admin
    assert accounts.set_admin("dispatcher", True).is_admin
    assert not accounts.set_admin("dispatcher", False).is_admin


def test_cli_manages_accounts(app, client, operator):
    runner = app.test_cli_runner()
    sign_in(client)

    def run(*args, stdin=None):
        return runner.invoke(args=["operators", *args], input=stdin)

    made = run("create", "boss", "--admin", "--password-stdin", stdin="boss-password\n")
    assert made.exit_code == 0 and "(admin)" in made.output
    assert db.session.scalar(select(Operator.is_admin).where(Operator.name == "boss")) is True

    assert run("disable", "dispatcher").exit_code == 0
    assert client.get("/").status_code == 302
    listed = run("list").output
    assert "dispatcher" in listed and "disabled" in listed and "admin" in listed
    assert run("enable", "dispatcher").exit_code == 0

    reset = run("reset-password", "dispatcher", "--password-stdin", stdin="fresh-password-1\n")
    assert reset.exit_code == 0, reset.output
    assert sign_in(client, password="fresh-password-1").status_code == 302

    assert run("promote", "dispatcher").exit_code == 0
    assert db.session.scalar(select(Operator.is_admin).where(Operator.name == "dispatcher")) is True
    assert run("demote", "dispatcher").exit_code == 0
    db.session.expire_all()
    assert db.session.scalar(select(Operator.is_admin).where(Operator.name == "dispatcher")) is False

    for args in (("disable", "ghost"), ("enable", "ghost"), ("promote", "ghost"), ("demote", "ghost")):
        missing = run(*args)
        assert missing.exit_code != 0 and "no operator named 'ghost'" in missing.output
    missing = run("reset-password", "ghost", "--password-stdin", stdin="whatever-password\n")
    assert missing.exit_code != 0 and "no operator named 'ghost'" in missing.output
    short = run("reset-password", "dispatcher", "--password-stdin", stdin="short\n")
    assert short.exit_code != 0 and "at least 8" in short.output


def test_the_login_page_says_how_to_create_the_first_operator(app, client):
    page = client.get("/login")
    assert page.status_code == 200 and "flask operators create NAME --admin" in page.text
    accounts.create_operator("first", PASSWORD, admin=True)
    assert "flask operators create" not in client.get("/login").text


def test_a_wrong_password_is_a_200_page_with_the_error_not_a_4xx(client, operator):
    resp = sign_in(client, password="not the password")
    assert resp.status_code == 200
    assert "do not match" in resp.text and "WWW-Authenticate" not in resp.headers


def test_sessions_expire_server_side_too(app, client, operator):
    from datetime import timedelta

    sign_in(client)
    row = db.session.scalar(select(OperatorSession))
    row.expires_at = row.expires_at - timedelta(hours=app.config["SESSION_HOURS"] + 1)
    db.session.commit()
    assert client.get("/").status_code == 302  # even though the cookie itself is still within its lifetime


def test_signing_in_again_ends_the_browsers_earlier_session(app, client, operator):
    sign_in(client)
    first = client.get_cookie("session").value
    # the same browser signs in again (an old sign-in form in another tab)
    token = csrf_of(client.get("/").text)
    again = client.post("/login", data={"name": "dispatcher", "password": PASSWORD, "csrf_token": token})
    assert again.status_code == 302 and sessions() == 1
    old = app.test_client()
    old.set_cookie("session", first)
    assert old.get("/").status_code == 302
    assert client.get("/").status_code == 200
