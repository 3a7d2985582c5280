"""Live connections on a real server: only signed-in operators, from the dashboard's own origin, and closed
when their session ends, including by `flask operators disable` run from a shell (another process)."""

from __future__ import annotations

import time

import pytest
import requests
import socketio
import websocket

from .conftest import OPERATOR, csrf_token, get, sign_in

pytestmark = pytest.mark.slow


def ws_status(url: str, cookie: str | None = None, origin: str | None = None) -> int:
    headers = [f"Cookie: session={cookie}"] if cookie else []
    try:
        ws = websocket.create_connection(
            url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket",
            header=headers, origin=origin, timeout=10, suppress_origin=origin is None,
        )
    except websocket.WebSocketBadStatusException as exc:
        return exc.status_code
    ws.close()
    return 101


def live_client(url: str, cookie: str, events: list) -> socketio.Client:
    client = socketio.Client(reconnection=False)
    client.on("*", lambda event, data=None: events.append(event))
    client.connect(url, headers={"Cookie": f"session={cookie}"}, transports=["polling", "websocket"], wait_timeout=10)
    return client


def wait_for(predicate, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_only_signed_in_operators_from_the_same_origin_may_connect(serve):
    server = serve("main", SOCKETIO_ALLOWED_ORIGINS="https://dispatch.example.com")
    cookie = sign_in(server.url)
    polling = requests.get(server.url + "/socket.io/?EIO=4&transport=polling", timeout=10)
    assert polling.status_code == 401 and polling.json()["error"] == "sign in first"
    assert ws_status(server.url) == 401
    assert ws_status(server.url, cookie="forged-or-stale") == 401
    assert ws_status(server.url, cookie) == 101
    assert ws_status(server.url, cookie, origin=server.url) == 101
    assert ws_status(server.url, cookie, origin="https://evil.example") == 403
    assert ws_status(server.url, cookie, origin="https://dispatch.example.com") == 101


def test_sign_out_closes_the_sessions_sockets(serve):
    server = serve("main")
    cookie = sign_in(server.url)
    events: list = []
    client = live_client(server.url, cookie, events)
    try:
        token, current = csrf_token(server.url, cookie)
        resp = requests.post(
            server.url + "/logout", data={"csrf_token": token},
            headers={"Cookie": f"session={current}"}, allow_redirects=False, timeout=10,
        )
        assert resp.status_code == 302
        assert wait_for(lambda: not client.connected), "the socket stayed open after sign-out"
        assert "signed_out" in events
        assert ws_status(server.url, cookie) == 401  # the copied cookie opens nothing any more
        assert get(server.url, "/", cookie).status_code == 302
    finally:
        client.disconnect()


@pytest.mark.parametrize("kind", ["main", "gunicorn"])
def test_disabling_from_the_command_line_closes_open_sockets_of_the_running_server(serve, kind):
    server = serve(kind)
    cookie = sign_in(server.url)
    events: list = []
    client = live_client(server.url, cookie, events)
    try:
        assert client.connected
        done = server.cli("operators", "disable", OPERATOR)
        assert done.returncode == 0, done.stderr
        started = time.monotonic()
        assert wait_for(lambda: not client.connected, 5), "the socket outlived the disable"
        assert time.monotonic() - started < 5
        assert ws_status(server.url, cookie) == 401
        assert get(server.url, "/", cookie).status_code == 302
        assert server.cli("operators", "enable", OPERATOR).returncode == 0
        assert get(server.url, "/", cookie).status_code == 302  # enabling does not revive ended sessions
    finally:
        client.disconnect()
