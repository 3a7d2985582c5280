"""Socket.IO: who may connect, and the only module that emits live events.

It subscribes to the domain events (events.py) that services announce, and rings the dashboards. Events are
doorbells that carry ids, never rendered message text: the dashboard re-fetches the changed fragment over
HTTP, so rendering, auth and escaping stay on one path (docs/architecture.md).
Pushes are best-effort: the database is the truth and a reconnecting page re-fetches what it shows.
"""

from __future__ import annotations

import logging
from typing import Any

from flask_login import current_user
from flask_socketio import join_room

from . import events
from .extensions import socketio

log = logging.getLogger(__name__)

ROOM = "operators"


@socketio.on("connect")
def _connect(auth: Any = None) -> bool:
    if not current_user.is_authenticated:
        return False  # refuse: the dashboard requires a signed-in operator
    join_room(ROOM)
    join_room(f"operator:{current_user.get_id()}")
    return True


def _emit(event: str, payload: dict[str, Any]) -> None:
    try:
        socketio.emit(event, payload, to=ROOM)
    except Exception:  # a push must never break the work that caused it
        log.exception("live event %s could not be emitted", event)


def _chat_created(_sender: object, *, chat_id: int) -> None:
    _emit("chats_changed", {"chat_id": chat_id, "change": "created"})


def _chat_ended(_sender: object, *, chat_id: int) -> None:
    _emit("chats_changed", {"chat_id": chat_id, "change": "ended"})
    _emit("chat_changed", {"chat_id": chat_id})


def _message_added(_sender: object, *, chat_id: int | None, message_id: int) -> None:
    if chat_id is None:
        _emit("unrouted_changed", {"message_id": message_id})
        return
    _emit("chat_changed", {"chat_id": chat_id, "message_id": message_id})
    _emit("chats_changed", {"chat_id": chat_id, "change": "activity"})


def _message_status(_sender: object, *, chat_id: int | None, message_id: int, status: str) -> None:
    _emit("message_status", {"chat_id": chat_id, "id": message_id, "status": str(status)})


def _numbers_changed(_sender: object) -> None:
    _emit("numbers_changed", {})


def _chat_read(_sender: object, *, chat_id: int) -> None:
    _emit("chats_changed", {"chat_id": chat_id, "change": "read"})


def _operator_signed_out(_sender: object, *, operator_id: str | None) -> None:
    """Close an operator's open sockets after they sign out (sockets keep the session from connect time).

    Sockets in this process are disconnected at once; the event tells pages served by other processes
    (with a message queue) to close theirs and go to the sign-in page.
    """
    if operator_id is None:
        return
    room = f"operator:{operator_id}"
    try:
        socketio.emit("signed_out", {}, to=room)
        server = socketio.server
        if server is not None:
            for sid, _eio_sid in list(server.manager.get_participants("/", room)):
                server.disconnect(sid, namespace="/")
    except Exception:
        log.exception("could not close the sockets of operator %s", operator_id)


_SUBSCRIPTIONS = {
    events.chat_created: _chat_created,
    events.chat_ended: _chat_ended,
    events.chat_read: _chat_read,
    events.message_added: _message_added,
    events.message_status: _message_status,
    events.numbers_changed: _numbers_changed,
    events.operator_signed_out: _operator_signed_out,
}


def subscribe() -> None:
    """Ring the dashboards on every domain event (idempotent: blinker keeps one connection per receiver)."""
    for signal, receiver in _SUBSCRIPTIONS.items():
        signal.connect(receiver)
