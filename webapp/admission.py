"""Who may open a live (Socket.IO) connection, decided at the WSGI layer before Engine.IO sees the request.

Every request under `/socket.io/` must come from a page of ours (same origin, or SOCKETIO_ALLOWED_ORIGINS) and
carry the cookie of a signed-in, unrevoked session of an enabled operator; anything else is answered at once
(401/403) and never reaches Engine.IO, so it holds no socket, no ping timer and no thread. A new connection is
also refused while its operator already has SOCKETIO_MAX_PER_OPERATOR open in this process (429), or the
process has SOCKETIO_MAX_CONNECTIONS (503): under gunicorn's threading worker each open websocket holds one of
`--threads`, so a cap below it keeps threads for webhooks.

The admitted request is tagged (operator id, session hash), and Engine.IO keeps that environ for the life of
the connection (`socketio.server.environ`), which is what the caps count and what `live` re-checks to close
the connections of sessions that ended. Works the same under `python -m webapp` and gunicorn: it is WSGI.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flask import Flask, session

from .services.operators import SESSION_KEY, key_hash, session_operator

log = logging.getLogger(__name__)

OPERATOR = "smsproxy.operator_id"
SESSION = "smsproxy.session_hash"
TICKET = "smsproxy.ticket"
__all__ = ["OPERATOR", "SESSION", "SESSION_KEY", "TICKET", "SocketAdmission"]

StartResponse = Callable[..., Any]


def _host_of(value: str) -> str:
    """host[:port] in lower case, without the default ports."""
    value = value.strip().lower()
    for default in (":80", ":443"):
        if value.endswith(default):
            return value[: -len(default)]
    return value


def origin_allowed(origin: str | None, host: str | None, allowed: Iterable[str]) -> bool:
    """Same origin (the Origin's host is the request's Host), or listed. No Origin: not a browser page
    (browsers send one on every websocket and cross-origin request); the session cookie still decides."""
    if not origin:
        return True
    origin = origin.strip()
    if origin.rstrip("/").lower() in {a.strip().rstrip("/").lower() for a in allowed if a.strip()}:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    return bool(host) and _host_of(parts.netloc) == _host_of(host or "")


def allowed_origins(app: Flask) -> list[str]:
    return [o.strip() for o in str(app.config.get("SOCKETIO_ALLOWED_ORIGINS") or "").split(",") if o.strip()]


def engineio_origin_check(app: Flask) -> Callable[[str | None, dict], bool]:
    """The same rule for Engine.IO's own CORS check (`cors_allowed_origins` as a callable)."""

    def check(origin: str | None, environ: dict | None = None) -> bool:
        host = (environ or {}).get("HTTP_HOST")
        return origin_allowed(origin, host, allowed_origins(app))

    return check


def tagged_sessions(server: Any) -> list[dict]:
    """The environs of this process's open Engine.IO connections that admission tagged."""
    if server is None:
        return []
    for _ in range(3):
        try:
            return [e for e in list(server.environ.values()) if OPERATOR in e]
        except RuntimeError:  # changed size while copying: try again
            continue
    return []


class SocketAdmission:
    """WSGI middleware in front of Flask-SocketIO's: admits or refuses `/socket.io/` requests."""

    def __init__(self, app: Flask, wsgi_app: Callable, socketio: Any, path: str = "socket.io") -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self.socketio = socketio
        self.prefix = "/" + path.strip("/")
        self._lock = threading.Lock()
        self._tickets = itertools.count(1)
        self._pending: dict[int, str] = {}  # ticket -> operator id: admitted handshakes not yet registered

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or ""
        if path != self.prefix and not path.startswith(self.prefix + "/"):
            return self.wsgi_app(environ, start_response)
        if environ.get("REQUEST_METHOD") == "OPTIONS":
            return self._refuse(start_response, 405, "live connections take no CORS preflight")
        if not origin_allowed(environ.get("HTTP_ORIGIN"), environ.get("HTTP_HOST"), allowed_origins(self.app)):
            log.warning("live connection refused: origin not allowed")
            return self._refuse(start_response, 403, "origin not allowed (SOCKETIO_ALLOWED_ORIGINS)")
        who = self._signed_in(environ)
        if who is None:
            return self._refuse(start_response, 401, "sign in first")
        operator_id, session_hash = who
        environ[OPERATOR], environ[SESSION] = operator_id, session_hash
        if "sid" in parse_qs(environ.get("QUERY_STRING") or ""):
            return self.wsgi_app(environ, start_response)  # a request of an admitted connection
        ticket = self._reserve(operator_id)
        if isinstance(ticket, tuple):
            status, message = ticket
            log.warning("live connection of operator %s refused: %s", operator_id, message)
            return self._refuse(start_response, status, message)
        environ[TICKET] = ticket
        try:
            result = self.wsgi_app(environ, start_response)
        except BaseException:
            self._release(ticket)
            raise
        return _Closing(result, lambda: self._release(ticket))

    # -- who is asking -------------------------------------------------------------------------------------

    def _signed_in(self, environ: dict) -> tuple[str, str] | None:
        """(operator id, session hash) when the cookie opens a live session of an enabled operator."""
        if "HTTP_COOKIE" not in environ:
            return None
        try:
            with self.app.request_context(dict(environ)):  # a copy: the body stream stays untouched
                key = session.get(SESSION_KEY)
                operator = session_operator(session.get("_user_id"), key)
                if operator is None:
                    return None
                return str(operator.id), key_hash(key)
        except Exception:
            log.exception("live connection: could not check the session")
            return None

    # -- caps ----------------------------------------------------------------------------------------------

    def _reserve(self, operator_id: str) -> int | tuple[int, str]:
        cfg = self.app.config
        per_operator = int(cfg.get("SOCKETIO_MAX_PER_OPERATOR") or 0)
        overall = int(cfg.get("SOCKETIO_MAX_CONNECTIONS") or 0)
        with self._lock:
            open_now = tagged_sessions(self.socketio.server)
            registered = {e.get(TICKET) for e in open_now}
            pending = [(t, op) for t, op in self._pending.items() if t not in registered]
            mine = sum(1 for e in open_now if e.get(OPERATOR) == operator_id)
            mine += sum(1 for _t, op in pending if op == operator_id)
            if per_operator and mine >= per_operator:
                return 429, f"too many live connections for this operator (SOCKETIO_MAX_PER_OPERATOR={per_operator})"
            if overall and len(open_now) + len(pending) >= overall:
                return 503, f"too many live connections (SOCKETIO_MAX_CONNECTIONS={overall})"
            ticket = next(self._tickets)
            self._pending[ticket] = operator_id
            return ticket

    def _release(self, ticket: int) -> None:
        with self._lock:
            self._pending.pop(ticket, None)

    @staticmethod
    def _refuse(start_response: StartResponse, status: int, message: str) -> list[bytes]:
        reasons = {401: "UNAUTHORIZED", 403: "FORBIDDEN", 405: "METHOD NOT ALLOWED", 429: "TOO MANY REQUESTS",
                   503: "SERVICE UNAVAILABLE"}
        body = json.dumps({"error": message}).encode()
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),  # Werkzeug closes the connection; gunicorn parks it without a thread
        ]
        if status in (429, 503):
            headers.append(("Retry-After", "5"))
        if status == 401:  # RFC 9110: a 401 carries a challenge (the dashboard's sign-in, as dashboard/ says)
            headers.append(("WWW-Authenticate", 'Cookie realm="dashboard", form="/login"'))
        start_response(f"{status} {reasons[status]}", headers)
        return [body]


class _Closing:
    """A WSGI response iterable that runs `on_close` once, when the server closes it (after the last byte:
    for a websocket, when the connection ends)."""

    def __init__(self, result: Iterable[bytes], on_close: Callable[[], None]) -> None:
        self._result = result
        self._on_close = on_close

    def __iter__(self):
        return iter(self._result)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._on_close()
