"""A real local HTTP receiver of event callbacks (stdlib http.server on 127.0.0.1, in a thread).

    with Receiver(secret="s3cret") as rx:               # rx.url -> http://127.0.0.1:PORT/events
        rx.answer(500, 500)                              # the next two POSTs get 500, then the default (200)
        rx.answer(("sleep", 7.0, 200))                   # the next one sleeps 7 s, then answers 200
        rx.default = 503; rx.default_sleep = 10.0        # every other POST: sleep 10 s, then 503
        rx.decide = lambda event: 500 if event["data"]["chat_id"] == 1 else None   # per event
        assert rx.wait_for(lambda got: len(got) >= 3, timeout=5)
        for hit in rx.hits: hit.event, hit.status, hit.signature_ok, hit.at

Each hit records the raw body, the headers, when it arrived, what was answered and whether the signature was
valid (verified with webapp.callbacks.signing, the reference implementation the docs' receiver mirrors).
`accepted()` lists the events answered 2xx, in arrival order.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from webapp.callbacks import signing

Action = int | tuple[str, float, int]


@dataclass
class Hit:
    body: bytes
    headers: dict[str, str]
    at: float  # time.time() on arrival
    status: int | None = None  # what was answered (None: not yet)
    slept: float = 0.0  # how long the answer is held back (a client with a shorter timeout has gone by then)
    signature_ok: bool | None = None
    signature_error: str | None = None
    event: dict[str, Any] = field(default_factory=dict)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], receiver: Receiver) -> None:
        super().__init__(addr, _Handler)
        self.receiver = receiver

    def handle_error(self, request: Any, client_address: Any) -> None:  # a client that timed out and left
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        rx: Receiver = self.server.receiver  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        hit = Hit(body=body, headers={k.lower(): v for k, v in self.headers.items()}, at=time.time())
        with contextlib.suppress(ValueError):
            hit.event = json.loads(body)
        if rx.secret is not None:
            try:
                signing.verify(rx.secret, body, self.headers.get(signing.HEADER))
                hit.signature_ok = True
            except signing.SignatureError as exc:
                hit.signature_ok, hit.signature_error = False, str(exc)
        sleep, status = rx._next_action(hit.event)
        hit.slept = sleep
        with rx._cond:
            rx.hits.append(hit)
            rx._cond.notify_all()
        if sleep:
            time.sleep(sleep)
        with rx._cond:  # before the answer leaves, so a client that saw it always finds it recorded
            hit.status = status
            rx._cond.notify_all()
        with contextlib.suppress(OSError):  # a client that timed out has gone
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()


class Receiver:
    def __init__(self, secret: str | None = None, path: str = "/events") -> None:
        self.secret = secret
        self.path = path
        self.default = 200
        self.default_sleep = 0.0
        # decides per event when nothing is queued (None: the default), e.g. lambda e: 500 if ... else None
        self.decide: Callable[[dict[str, Any]], Action | None] | None = None
        self.hits: list[Hit] = []
        self._plan: deque[Action] = deque()
        self._cond = threading.Condition()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}{self.path}"

    def start(self) -> Self:
        self._server = _Server(("127.0.0.1", 0), self)
        self._thread = threading.Thread(target=self._server.serve_forever, name="receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def answer(self, *actions: Action) -> None:
        """Queue what the next POSTs get: a status, or ("sleep", seconds, status)."""
        with self._cond:
            self._plan.extend(actions)

    def _next_action(self, event: dict[str, Any]) -> tuple[float, int]:
        with self._cond:
            action = self._plan.popleft() if self._plan else None
        if action is None and self.decide is not None:
            action = self.decide(event)
        if action is None:
            return self.default_sleep, self.default
        if isinstance(action, int):
            return 0.0, action
        _, seconds, status = action
        return seconds, status

    def wait_for(self, condition: Callable[[list[Hit]], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not condition(self.hits):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def accepted(self, max_slept: float = 4.0) -> list[dict[str, Any]]:
        """The events answered 2xx in time (held back at most `max_slept` s), in arrival order."""
        with self._cond:
            return [h.event for h in self.hits
                    if h.status is not None and 200 <= h.status < 300 and h.slept <= max_slept]

    def accepted_types(self) -> list[str]:
        return [e.get("type", "?") for e in self.accepted()]

    def clear(self) -> None:
        with self._cond:
            self.hits.clear()
            self._plan.clear()
