"""Admins on the dashboard (issue 11): the number pool and operator accounts, through the same services as the
CLI, CSRF-protected and audited; dispatchers get a 403 page. Also: pool exhaustion names who blocks, the last
enabled admin stays, 401s carry WWW-Authenticate, /favicon.ico."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import select

from tests.test_auth import PASSWORD, csrf_of, fresh_g_per_request, sign_in
from webapp import audit
from webapp.extensions import db
from webapp.models import Operator, ProxyNumber
from webapp.services import Conflict, PoolExhausted, start_chat
from webapp.services import operators as accounts
from webapp.services.chats import validate_chat_request


@pytest.fixture
def client(app: Flask):
    fresh_g_per_request(app)
    return app.test_client()


@pytest.fixture
def admin(app: Flask) -> Operator:
    return accounts.create_operator("boss", PASSWORD, admin=True)


@pytest.fixture
def dispatcher(app: Flask) -> Operator:
    return accounts.create_operator("dispatcher", PASSWORD)


def as_admin(client):
    assert sign_in(client, "boss").status_code == 302
    return csrf_of(client.get("/numbers").text)


def pool() -> set[str]:
    return set(db.session.scalars(select(ProxyNumber.number)))


def pair(a: str, b: str, a_label: str = "", b_label: str = ""):
    return start_chat(validate_chat_request(a=a, b=b, a_label=a_label, b_label=b_label))


# ------------------------------------------------------------------ access


def test_a_dispatcher_sees_no_admin_controls_and_gets_a_403_page(client, admin, dispatcher):
    sign_in(client)
    numbers = client.get("/numbers").text
    assert "Only an admin can add or remove numbers" in numbers
    assert "add-number" not in numbers and "data-remove" not in numbers and "/admin/" not in numbers
    assert "/admin/operators" not in client.get("/").text  # no nav link
    token = csrf_of(numbers)
    for method, url in (("GET", "/admin/operators"), ("POST", "/admin/numbers"), ("POST", "/admin/numbers/remove"),
                        ("POST", "/admin/operators"), ("POST", "/admin/operators/disable")):
        resp = client.open(url, method=method, data={"csrf_token": token, "number": "+447700900009", "name": "boss"})
        assert resp.status_code == 403, (method, url)
        assert "Admins only" in resp.text and "without admin rights" in resp.text
    assert "+447700900009" not in pool()
    assert not accounts.get_operator("boss").disabled_at


def test_an_admin_sees_the_links_and_controls(client, admin):
    as_admin(client)
    home = client.get("/").text
    assert 'href="/admin/operators"' in home
    numbers = client.get("/numbers").text
    assert 'id="add-number"' in numbers and 'data-remove="+447700900001"' in numbers


def test_admin_forms_need_the_csrf_token(client, admin):
    as_admin(client)
    resp = client.post("/admin/numbers", data={"number": "+447700900009"})
    assert resp.status_code == 400 and "+447700900009" not in pool()
    resp = client.post("/admin/operators", data={"name": "x", "password": PASSWORD, "password2": PASSWORD})
    assert resp.status_code == 400
    with pytest.raises(Exception, match="no operator"):
        accounts.get_operator("x")


# ------------------------------------------------------------------ numbers


def test_an_admin_adds_and_removes_a_number_audited_as_them(client, admin):
    token = as_admin(client)
    added = client.post("/admin/numbers", data={"number": "07700 900009", "csrf_token": token})
    assert added.status_code == 303 and added.headers["Location"] == "/numbers"
    assert "+447700900009" in pool()
    page = client.get("/numbers").text
    assert "Added +447700900009 to the pool." in page and 'data-number="+447700900009"' in page
    removed = client.post("/admin/numbers/remove", data={"number": "+447700900009", "csrf_token": token})
    assert removed.status_code == 303 and "+447700900009" not in pool()
    trail = [(e.action, e.actor, e.detail) for e in audit.recent(10)]
    assert ("number.added", "operator:boss", "+447700900009") in trail
    assert ("number.removed", "operator:boss", "+447700900009") in trail


def test_bad_or_busy_numbers_get_a_clear_error_next_to_the_form(client, admin):
    token = as_admin(client)
    bad = client.post("/admin/numbers", data={"number": "12", "csrf_token": token})
    assert bad.status_code == 400 and 'id="add-number-error"' in bad.text and "&#39;12&#39; is" in bad.text
    assert 'value="12"' in bad.text  # what was typed stays
    dup = client.post("/admin/numbers", data={"number": "+447700900001", "csrf_token": token})
    assert dup.status_code == 409 and "already in the pool" in dup.text
    for i in range(2):
        pair(f"+44770090010{i}", f"+44770090020{i}")
    busy = [n for n, in db.session.execute(select(ProxyNumber.number)).all()]
    chats_on = {n: 0 for n in busy}
    from webapp.models import Chat

    for chat in db.session.scalars(select(Chat)):
        chats_on[chat.proxy_number] += 1
    number = next(n for n, c in chats_on.items() if c == 1)
    refused = client.post("/admin/numbers/remove", data={"number": number, "csrf_token": token})
    assert refused.status_code == 409
    assert f"{number} is in use by 1 active chat: it can be removed once it has ended" in refused.text
    assert number in pool()
    gone = client.post("/admin/numbers/remove", data={"number": "+447700900555", "csrf_token": token})
    assert gone.status_code == 404 and "not in the pool" in gone.text


# ------------------------------------------------------------------ operators


def test_an_admin_manages_operators_through_the_services(app, client, admin):
    token = as_admin(client)
    page = client.get("/admin/operators")
    assert page.status_code == 200 and 'data-name="boss"' in page.text
    made = client.post("/admin/operators", data={"name": "tom", "password": "tom-password", "password2": "tom-password",
                                                 "csrf_token": token})
    assert made.status_code == 303
    tom = accounts.get_operator("tom")
    assert not tom.is_admin and tom.disabled_at is None
    client.post("/admin/operators", data={"name": "ann", "password": "ann-password", "password2": "ann-password",
                                          "admin": "on", "csrf_token": token})
    assert accounts.get_operator("ann").is_admin

    # tom signs in elsewhere; disabling him ends that session at once
    other = app.test_client()
    assert sign_in(other, "tom", "tom-password").status_code == 302 and other.get("/").status_code == 200
    assert client.post("/admin/operators/disable", data={"name": "tom", "csrf_token": token}).status_code == 303
    assert other.get("/").status_code == 302
    assert "disabled" in sign_in(other, "tom", "tom-password").text
    client.post("/admin/operators/enable", data={"name": "tom", "csrf_token": token})
    client.post("/admin/operators/promote", data={"name": "tom", "csrf_token": token})
    db.session.expire_all()
    assert accounts.get_operator("tom").is_admin
    client.post("/admin/operators/demote", data={"name": "tom", "csrf_token": token})
    reset = client.post("/admin/operators/password", data={"name": "tom", "password": "new-tom-pass",
                                                          "password2": "new-tom-pass", "csrf_token": token})
    assert reset.status_code == 303
    db.session.expire_all()
    tom = accounts.get_operator("tom")
    assert not tom.is_admin and tom.disabled_at is None
    assert sign_in(app.test_client(), "tom", "new-tom-pass").status_code == 302
    actions = [(e.action, e.actor) for e in audit.recent(20) if e.detail and e.detail.startswith("tom")]
    for action in ("operator.created", "operator.disabled", "operator.enabled", "operator.admin_changed",
                   "operator.password_reset"):
        assert (action, "operator:boss") in actions, action


def test_operator_form_errors_are_clear(client, admin):
    token = as_admin(client)
    short = client.post("/admin/operators", data={"name": "tom", "password": "short", "password2": "short",
                                                  "csrf_token": token})
    assert short.status_code == 400 and "at least 8 characters" in short.text and 'value="tom"' in short.text
    typo = client.post("/admin/operators", data={"name": "tom", "password": "long-enough", "password2": "long-enougj",
                                                 "csrf_token": token})
    assert typo.status_code == 400 and "the two passwords do not match" in typo.text
    taken = client.post("/admin/operators", data={"name": "boss", "password": PASSWORD, "password2": PASSWORD,
                                                  "csrf_token": token})
    assert taken.status_code == 409 and "already exists" in taken.text
    ghost = client.post("/admin/operators/disable", data={"name": "ghost", "csrf_token": token})
    assert ghost.status_code == 404 and "no operator named" in ghost.text
    assert client.post("/admin/operators/explode", data={"name": "boss", "csrf_token": token}).status_code == 404


def test_the_last_enabled_admin_cannot_be_disabled_or_demoted(app, client, admin, dispatcher):
    token = as_admin(client)
    for action in ("disable", "demote"):
        resp = client.post(f"/admin/operators/{action}", data={"name": "boss", "csrf_token": token})
        assert resp.status_code == 409 and "boss is the only enabled admin" in resp.text
    db.session.expire_all()
    boss = accounts.get_operator("boss")
    assert boss.is_admin and boss.disabled_at is None
    # the CLI goes through the same rule
    runner = app.test_cli_runner()
    refused = runner.invoke(args=["operators", "demote", "boss"])
    assert refused.exit_code != 0 and "only enabled admin" in refused.output
    # with a second admin, boss may step down (and lands on a page a dispatcher may see)
    accounts.set_admin("dispatcher", True)
    step_down = client.post("/admin/operators/demote", data={"name": "boss", "csrf_token": token})
    assert step_down.status_code == 303 and step_down.headers["Location"] == "/"
    assert client.get("/admin/operators").status_code == 403
    # a disabled admin does not count: the remaining enabled one stays
    with pytest.raises(Conflict, match="only enabled admin"):
        accounts.disable_operator("dispatcher")


# ------------------------------------------------------------------ pool exhaustion


def test_pool_exhaustion_names_who_blocks_masked_without_command_syntax(app):
    a = "+447700900111"
    for i in range(3):  # the pool has three numbers: the customer is now on all of them
        pair(a, f"+44770090050{i}", a_label="Customer")
    with pytest.raises(PoolExhausted) as one:
        pair(a, "+447700900599", a_label="Customer", b_label="Driver")
    assert str(one.value) == (
        "Customer (+44 •••• ••01 11) is already in a chat on every proxy number. "
        "End one of their active chats, or ask an admin to add a number to the pool."
    )
    assert "`" not in str(one.value) and "flask" not in str(one.value)
    with pytest.raises(PoolExhausted) as other_side:
        pair("+447700900599", a)  # unlabelled, and the blocker is B
    assert other_side.value.reason == "Person B (+44 •••• ••01 11) is already in a chat on every proxy number."


def test_pool_exhaustion_between_two_people_and_an_empty_pool(app):
    a, b = "+447700900111", "+447700900222"
    pair(a, "+447700900301")
    pair(a, "+447700900302")
    pair(b, "+447700900303")  # b on the third number: no number is free for both
    with pytest.raises(PoolExhausted) as both:
        pair(a, b, "Customer", "Driver")
    assert both.value.reason.startswith("Between them, Customer (+44 •••• ••01 11) and Driver (+44 •••• ••02 22)")
    db.session.execute(ProxyNumber.__table__.delete())
    db.session.commit()
    with pytest.raises(PoolExhausted) as empty:
        pair("+447700900777", "+447700900888")
    assert str(empty.value) == (
        "The pool has no proxy numbers yet, so no chat can start. Ask an admin to add a number to the pool."
    )


def test_the_pair_form_says_it_to_a_dispatcher_and_links_an_admin(client, admin, dispatcher):
    a = "+447700900111"
    for i in range(3):
        pair(a, f"+44770090050{i}")
    form = {"a": a, "b": "+447700900599", "a_label": "Customer"}
    sign_in(client)
    token = csrf_of(client.get("/").text)
    resp = client.post("/chats", data={**form, "csrf_token": token}, headers={"HX-Request": "true"})
    assert resp.status_code == 422
    assert "Customer (+44 •••• ••01 11) is already in a chat on every proxy number" in resp.text
    assert "ask an admin to add a number" in resp.text and "/numbers#add-number" not in resp.text
    client.post("/logout", data={"csrf_token": token})
    token = as_admin(client)
    resp = client.post("/chats", data={**form, "csrf_token": token}, headers={"HX-Request": "true"})
    assert 'href="/numbers#add-number"' in resp.text and "ask an admin" not in resp.text


# ------------------------------------------------------------------ small ones


def test_favicon_is_served_to_anyone(client):
    resp = client.get("/favicon.ico")
    assert resp.status_code == 200 and resp.data[:4] == b"\x00\x00\x01\x00"  # an ICO file
    svg = client.get("/static/favicon.svg")
    assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"


def test_every_401_carries_a_challenge(app, client):
    app.config["WEBHOOK_TOKEN"] = "a-webhook-token-for-this-test-123456"
    hook = client.post("/webhooks/inbound-sms", data={"msisdn": "447700900999", "to": "447700900001", "text": "hi"})
    assert hook.status_code == 401 and hook.headers["WWW-Authenticate"] == 'Token realm="webhooks"'
    socket = client.get("/socket.io/?EIO=4&transport=polling")
    assert socket.status_code == 401 and socket.headers["WWW-Authenticate"].startswith("Cookie realm=")
    assert client.get("/api/chats").headers["WWW-Authenticate"].startswith("Bearer")
