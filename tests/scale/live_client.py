"""A signed-in Socket.IO client for a running app process (python-socketio's client, websocket transport).

Signing in: the session is made as a sign-in makes it (a server-side session row, services/operators.py),
and the cookie the way Flask stores it: signed with the app's SECRET_KEY, holding `_user_id` and the session's
key. That skips the password form only; admission and the socket's `connect` handler check it all.
"""

from __future__ import annotations

import threading
from typing import Any

import requests
import socketio
from flask import Flask
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import Operator
from webapp.services.operators import start_session


def operator_cookie(app: Flask, name: str = "scale-op") -> str:
    """A session cookie value for an operator (created if missing), signed with app's SECRET_KEY."""
    with app.app_context():
        op = db.session.scalar(select(Operator).where(Operator.name == name))
        if op is None:
            op = Operator(name=name, password_hash="!unusable")
            db.session.add(op)
            db.session.commit()
        op_id = op.id
        key = start_session(op)
        db.session.remove()
    serializer = app.session_interface.get_signing_serializer(app)
    return serializer.dumps({"_user_id": str(op_id), "_fresh": True, "sk": key})


def mentions(payload: Any, value: int) -> bool:
    """Whether an event payload carries `value` as an id anywhere in it."""
    if isinstance(payload, dict):
        return any(mentions(v, value) for v in payload.values())
    if isinstance(payload, list | tuple):
        return any(mentions(v, value) for v in payload)
    return payload == value or payload == str(value)


class LiveClient:
    def __init__(self, url: str, cookie: str, transports: tuple[str, ...] = ("websocket",)) -> None:
        self.url, self.cookie, self.transports = url, cookie, list(transports)
        self.events: list[tuple[str, Any]] = []
        self._cond = threading.Condition()
        # The cookie rides in a requests session too: long polling sends it with every request (the header given
        # to connect() only reaches the handshake), as a browser would.
        http = requests.Session()
        http.cookies.set("session", cookie)
        self.sio = socketio.Client(reconnection=True, reconnection_delay=0.2, http_session=http)
        self.sio.on("*", self._any)

    def _any(self, event: str, data: Any = None) -> None:
        with self._cond:
            self.events.append((event, data))
            self._cond.notify_all()

    def connect(self) -> LiveClient:
        self.sio.connect(
            self.url, headers={"Cookie": f"session={self.cookie}"}, transports=self.transports, wait_timeout=10
        )
        return self

    def wait_for(self, predicate, timeout: float = 15) -> tuple[str, Any] | None:
        with self._cond:
            found: list = []

            def check() -> bool:
                found[:] = [e for e in self.events if predicate(*e)]
                return bool(found)

            self._cond.wait_for(check, timeout)
            return found[0] if found else None

    def close(self) -> None:
        self.sio.disconnect()
