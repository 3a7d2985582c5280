"""Socket.IO: who may connect, and the only module that emits live events.

Admission happens twice: `admission.SocketAdmission` refuses, at the WSGI layer, any `/socket.io/` request
without a live operator session (before Engine.IO holds anything for it); `connect` below checks again.
Connections of sessions that end (sign-out, disabled operator, password reset, expiry) are closed: at once
in this process (on the events services announce), and by a re-check loop every RECHECK_SECONDS for changes
made elsewhere (`flask operators disable` in a shell, another web process).

It subscribes to the domain events (events.py) that services announce, and rings the dashboards. Events are
doorbells that carry ids, never rendered message text: the dashboard re-fetches the changed fragment over
HTTP, so rendering, auth and escaping stay on one path (docs/architecture.md).
Pushes are best-effort: the database is the truth and a reconnecting page re-fetches what it shows.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from flask import current_app, request, session
from flask_login import current_user
from flask_socketio import join_room

from . import admission, events
from .extensions import db, socketio
from .services.operators import SESSION_KEY, key_hash, live_session_hashes

log = logging.getLogger(__name__)

ROOM = "operators"
RECHECK_SECONDS = 1.0  # how often open connections are checked against their sessions (ended, disabled)


@socketio.on("connect")
def _connect(auth: Any = None) -> bool:
    """Second line behind `admission` (which refuses anonymous connections before Engine.IO sees them)."""
    if not current_user.is_authenticated:
        return False  # refuse: the dashboard requires a signed-in operator
    key = session.get(SESSION_KEY)
    if not isinstance(key, str) or not key:
        return False
    environ = request.environ  # the environ Engine.IO keeps for this connection
    operator_id = str(current_user.get_id())
    if admission.TICKET not in environ:  # not admitted through the WSGI layer (Flask-SocketIO's test client)
        cap = int(current_app.config.get("SOCKETIO_MAX_PER_OPERATOR") or 0)
        mine = [e for e in admission.tagged_sessions(socketio.server) if e.get(admission.OPERATOR) == operator_id]
        if cap and len([e for e in mine if e is not environ]) >= cap:
            return False
    environ[admission.OPERATOR] = operator_id
    environ[admission.SESSION] = key_hash(key)
    join_room(ROOM)
    join_room(f"operator:{operator_id}")
    join_room(f"session:{environ[admission.SESSION]}")
    _start_recheck(current_app._get_current_object())
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


def _unrouted_handled(_sender: object, *, message_id: int) -> None:
    _emit("unrouted_changed", {"message_id": message_id, "change": "handled"})


def _part_held(_sender: object, *, chat_id: int) -> None:
    _emit("chat_changed", {"chat_id": chat_id})  # the transcript shows the text as arriving


def _numbers_changed(_sender: object) -> None:
    _emit("numbers_changed", {})


def _chat_read(_sender: object, *, chat_id: int) -> None:
    _emit("chats_changed", {"chat_id": chat_id, "change": "read"})


def _operator_signed_out(_sender: object, *, operator_id: str | None) -> None:
    """Close every open socket of an operator (disabled, or password reset).

    Sockets in this process are closed at once; the event tells pages served by other processes (with a
    message queue) to go to the sign-in page, and each process's re-check closes its own within a second.
    """
    if operator_id is None:
        return
    _notify(f"operator:{operator_id}")
    _close_where(lambda e: e.get(admission.OPERATOR) == str(operator_id))


def _session_ended(_sender: object, *, session_hash: str) -> None:
    """Close the sockets opened with one session (its operator signed out); other sessions stay."""
    _notify(f"session:{session_hash}")
    _close_where(lambda e: e.get(admission.SESSION) == session_hash)


def _notify(room: str) -> None:
    try:
        socketio.emit("signed_out", {}, to=room)
    except Exception:
        log.exception("could not announce a sign-out")


def _close_where(predicate) -> int:
    server = socketio.server
    if server is None:
        return 0
    closed = 0
    for eio_sid, environ in _open_connections(server):
        if predicate(environ):
            _close(server, eio_sid, environ)
            closed += 1
    return closed


def _open_connections(server: Any) -> list[tuple[str, dict]]:
    for _ in range(3):
        try:
            return [(sid, e) for sid, e in list(server.environ.items()) if admission.OPERATOR in e]
        except RuntimeError:  # changed size while copying
            continue
    return []


def _close(server: Any, eio_sid: str, environ: dict) -> None:
    """Tell the page, end the Socket.IO session, and close the Engine.IO connection under it. The connection
    stops counting as its operator's at once (it may take a moment to go)."""
    environ.pop(admission.OPERATOR, None)
    environ.pop(admission.SESSION, None)
    try:
        sid = server.manager.sid_from_eio_sid(eio_sid, "/")
        if sid is not None:
            server.emit("signed_out", {}, to=sid)
            server.disconnect(sid, namespace="/", ignore_queue=True)
        # Not `server.eio.disconnect()`: it waits until the connection's send queue is drained, and when the page
        # has already gone (it reloads on "signed_out") nobody drains it, so the request that ended the session
        # (a sign-out, an admin disabling someone) hung. The close packet is queued all the same.
        sock = server.eio.sockets.pop(eio_sid, None)
        if sock is not None:
            sock.close(wait=False, reason=server.eio.reason.SERVER_DISCONNECT)
    except Exception:
        log.exception("could not close a live connection")


def recheck_sockets(app: Any) -> int:
    """Close this process's connections whose session has ended, expired, or whose operator was disabled
    (also by `flask operators disable` in another process). Returns how many were closed."""
    server = socketio.server
    if server is None:
        return 0
    open_now = _open_connections(server)
    if not open_now:
        return 0
    hashes = sorted({e.get(admission.SESSION) for _sid, e in open_now if e.get(admission.SESSION)})
    with app.app_context():
        try:
            alive = live_session_hashes(hashes)
        finally:
            db.session.remove()
    closed = 0
    for eio_sid, environ in open_now:
        if environ.get(admission.SESSION) not in alive:
            _close(server, eio_sid, environ)
            closed += 1
    if closed:
        log.info("closed %d live connection(s) of ended sessions", closed)
    return closed


_recheck_lock = threading.Lock()
_recheck_started = False


def _start_recheck(app: Any) -> None:
    """One re-check loop per server process, started by the first connection (never in tests: they call
    `recheck_sockets` themselves)."""
    global _recheck_started
    if app.testing or _recheck_started:
        return
    with _recheck_lock:
        if _recheck_started:
            return
        _recheck_started = True
    socketio.start_background_task(_recheck_loop, app)


def _recheck_loop(app: Any) -> None:
    while True:
        time.sleep(RECHECK_SECONDS)
        try:
            recheck_sockets(app)
        except Exception:  # the loop must outlive a database hiccup
            log.exception("live connection re-check failed")


_SUBSCRIPTIONS = {
    events.chat_created: _chat_created,
    events.chat_ended: _chat_ended,
    events.chat_read: _chat_read,
    events.message_added: _message_added,
    events.message_status: _message_status,
    events.part_held: _part_held,
    events.numbers_changed: _numbers_changed,
    events.operator_signed_out: _operator_signed_out,
    events.session_ended: _session_ended,
    events.unrouted_handled: _unrouted_handled,
}


def subscribe() -> None:
    """Ring the dashboards on every domain event (idempotent: blinker keeps one connection per receiver)."""
    for signal, receiver in _SUBSCRIPTIONS.items():
        signal.connect(receiver)
