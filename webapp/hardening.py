"""Bad input gets a clear 4xx, never a 5xx: JSON depth and NUL, integer ids, and the CSRF failure page.

- JSON bodies nested deeper than MAX_JSON_DEPTH, or holding a NUL character, are refused before Python's
  parser could recurse (a few thousand levels raised RecursionError: a 500/503).
- `<int:...>` URL parts are bounded to what an id column holds: larger ones do not match (404), instead of
  overflowing the database driver.
- NUL characters in query strings and forms are refused (PostgreSQL cannot store them: every retry failed).
- A value the database refuses as data (out of range, NUL) is a 400, and the transaction is rolled back.
- A CSRF failure explains itself, including the usual cause on a plain-HTTP LAN (SESSION_COOKIE_SECURE).
- TRUSTED_PROXIES: the client's address, scheme and host from that many reverse proxies' X-Forwarded-*.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from flask import Flask, Response, current_app, jsonify, render_template, request
from flask.json.provider import DefaultJSONProvider
from flask_wtf.csrf import CSRFError
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

log = logging.getLogger(__name__)

MAX_JSON_DEPTH = 32
MAX_ID = 2**31 - 1  # ids are INTEGER columns: int4 on PostgreSQL (SQLite would take 64 bits)
JSON_PATHS = ("/chat",)  # the tutorial's POST /chat (and nothing else under /chat...: that is the dashboard)
JSON_PREFIXES = ("/api/", "/webhooks/")
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


class JSONInputError(ValueError):
    pass


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in a JSON text (strings skipped), without recursion."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRINGS.sub('""', text)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _has_nul(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class BoundedJSONProvider(DefaultJSONProvider):
    """Flask's JSON, refusing input nested deeper than MAX_JSON_DEPTH or holding NUL characters."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        text = s.decode("utf-8") if isinstance(s, bytes | bytearray) else s
        if json_depth(text) > MAX_JSON_DEPTH:
            raise JSONInputError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        value = json.loads(text, **kwargs)
        if _has_nul(value):
            raise JSONInputError("JSON text contains a NUL character")
        return value


def read_json() -> Any:
    """The request body parsed as JSON by the app's provider; JSONInputError (a ValueError) says what is wrong.

    (Flask's own `get_json` hides the reason outside debug mode: "could not understand".)"""
    data = request.get_data(cache=True)
    try:
        return current_app.json.loads(data)
    except JSONInputError:
        raise
    except (ValueError, UnicodeDecodeError):
        raise JSONInputError("the body is not valid JSON") from None


class BoundedIntConverter(IntegerConverter):
    """`<int:...>` limited to what the database can hold (larger values: no match, 404)."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def wants_json(path: str) -> bool:
    return path in JSON_PATHS or path.startswith(JSON_PREFIXES)


def _wants_json() -> bool:
    return wants_json(request.path) or request.accept_mimetypes.best == "application/json"


def _refuse_nul() -> Response | tuple[Response, int] | None:
    """NUL in the query string, the path, or a form (the webhooks check their own body: see webhooks.py)."""
    suspects: list[str] = []
    for key, values in request.args.lists():
        suspects += [key, *values]
    suspects += [str(v) for v in (request.view_args or {}).values()]
    if request.blueprint != "webhooks" and request.mimetype in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        for key, values in request.form.lists():
            suspects += [key, *values]
    if any("\x00" in s for s in suspects):
        if _wants_json():
            return jsonify({"error": "the request contains a NUL character"}), 400
        return Response("The request contains a NUL character.", status=400, mimetype="text/plain")
    return None


def _csrf_error(exc: CSRFError):
    if _wants_json():
        return jsonify({"error": exc.description}), 400
    cfg_secure = _cookie_secure()
    plain_http = request.scheme == "http"
    host = (request.host or "").split(":")[0]
    local = host in ("localhost", "127.0.0.1", "::1", "[::1]")
    cookie_blocked = cfg_secure and plain_http and not local
    if request.headers.get("HX-Request"):
        hint = (
            "Your browser did not send the session cookie over plain HTTP: use HTTPS, or set "
            "SESSION_COOKIE_SECURE=false on a trusted network."
            if cookie_blocked
            else "Your session changed (signed out, or the server restarted). Reload the page and try again."
        )
        return Response(f"{exc.description} {hint}", status=400, mimetype="text/plain")
    return render_template("errors/csrf.html", reason=exc.description, cookie_blocked=cookie_blocked, host=host), 400


def _cookie_secure() -> bool:
    return bool(current_app.config.get("SESSION_COOKIE_SECURE"))


def init_app(app: Flask) -> None:
    """Call before blueprints are registered (the converter applies to rules added afterwards)."""
    app.json = BoundedJSONProvider(app)
    app.url_map.converters["int"] = BoundedIntConverter
    app.before_request(_refuse_nul)
    app.register_error_handler(CSRFError, _csrf_error)


def trust_proxies(app: Flask) -> None:
    """Believe X-Forwarded-For/-Proto/-Host/-Port from TRUSTED_PROXIES hops (0: believe nothing).

    Wraps the outermost WSGI layer, so the sign-in throttle, the logs, cookies' Secure flag and the live
    connections' origin check all see the client's address and the scheme and host it used."""
    hops = int(app.config.get("TRUSTED_PROXIES") or 0)
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)  # type: ignore[method-assign]
