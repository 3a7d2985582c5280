"""Slow clients cannot starve the server (issue: 110 connections that sent half a request and stopped made every
webhook time out under `gunicorn -w 1 --threads 100`).

Real server processes with 100 threads (the default and the documented command), and 150 slow clients held open
(half-sent heads, half-sent bodies, silent connections): more than the threads, so with the stock gthread worker
every webhook would wait; here the webhooks must answer within 1 s.
"""

from __future__ import annotations

import contextlib
import socket
import time

import pytest

from webapp.httpworker import request_complete

from .conftest import webhook

pytestmark = pytest.mark.slow
SLOW = 150


def hold(port: int, payload: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if payload:
        sock.sendall(payload)
    return sock


def half_requests(port: int) -> list[bytes]:
    head = f"POST /webhooks/inbound-sms HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
    return [
        head,  # the head never ends
        head + b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\nmsisdn=4477",  # body cut
        b"",  # connected, silent
    ]


@pytest.mark.parametrize("kind", ["main", "gunicorn"])
def test_slow_clients_hold_no_thread_and_webhooks_still_answer(serve, kind):
    server = serve(kind, operator=False)
    port = int(server.url.rsplit(":", 1)[1])
    webhook(server.url, "warm", message_id=f"warm-{time.time_ns()}")
    payloads = half_requests(port)
    held = [hold(port, payloads[i % len(payloads)]) for i in range(SLOW)]
    try:
        time.sleep(0.5)  # let the server take them all in
        for i in range(5):
            start = time.monotonic()
            resp = webhook(server.url, f"still here {i}", message_id=f"slow-{time.time_ns()}")
            took = time.monotonic() - start
            assert resp.status_code == 204, resp.text
            assert took < 1.0, took
        # the slow ones were not answered (nor dropped) yet: they are simply waiting for their bytes
        still_open = 0
        for sock in held[: len(payloads)]:
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                if sock.recv(1):
                    raise AssertionError("a half-sent request was answered")
                continue
            still_open += 1
        assert still_open == len(payloads)
    finally:
        for sock in held:
            with contextlib.suppress(OSError):
                sock.close()


def test_a_body_completed_later_is_served_whole(serve):
    """The bytes read on the event loop reach the app in order: a body sent in two halves is served whole."""
    server = serve("main", operator=False)
    port = int(server.url.rsplit(":", 1)[1])
    body = b"msisdn=447700900123&to=447700900001&text=two+halves&messageId=halves-1&type=text"
    head = (
        f"POST /webhooks/inbound-sms HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body[:20])
        time.sleep(0.3)
        sock.sendall(body[20:])
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 204"), answer[:200]


@pytest.mark.parametrize(
    ("buf", "done"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n", False),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True),
        (b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab", False),
        (b"POST / HTTP/1.1\r\ncontent-length:5\r\n\r\nabcde", True),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", True),
        (b"POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n" + b"x" * (1024 * 1024), True),
        (b"GET /" + b"a" * (64 * 1024), True),
    ],
)
def test_request_complete(buf, done):
    assert request_complete(buf) is done
