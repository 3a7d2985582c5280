"""Vonage webhooks: inbound SMS and delivery receipts. CSRF-exempt; authenticated by signature or token.

Each arrives as a GET query, a POST form or a POST JSON body (docs/vonage.md §2). Whatever the input, the
answer is 204 (stored), a 4xx JSON error naming the problem, or 503 when storage failed (Vonage retries);
never a 500 or a stack trace.

Authentication (README, Security), checked before anything is read into the database:
- VONAGE_SIGNATURE_SECRET set: a valid Vonage signature with a fresh timestamp passes;
- WEBHOOK_TOKEN set: `?token=<WEBHOOK_TOKEN>` in the query string passes (for any method); it is the
  protection for accounts on which Vonage has not enabled signed webhooks;
- with either set, anything else is 401 and changes nothing. With neither, webhooks are unauthenticated:
  allowed for the simulated gateway, and for SMS_GATEWAY=vonage only with WEBHOOKS_ALLOW_UNSIGNED=true.
"""

from __future__ import annotations

import hmac
import json
import logging
from urllib.parse import unquote_to_bytes

from flask import Blueprint, Response, current_app, jsonify, request

from . import services
from .config import ConfigError
from .extensions import csrf
from .hardening import JSONInputError, read_json
from .signatures import METHODS, SignatureError, verify

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
csrf.exempt(bp)


@bp.record_once
def _check_config(state) -> None:
    method = state.app.config["VONAGE_SIGNATURE_METHOD"]
    if method not in METHODS:
        raise ConfigError(f"VONAGE_SIGNATURE_METHOD must be one of {', '.join(METHODS)}, not {method!r}")


class BadPayload(ValueError):
    pass


def _strict_utf8(raw: bytes, where: str) -> None:
    """Refuse %-encoded or raw bytes that are not UTF-8 (Werkzeug would pass them on mangled or drop them)."""
    try:
        unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        raise BadPayload(f"the {where} is not valid UTF-8") from None


def _flat(pairs: dict[str, list[str]]) -> dict[str, str]:
    out = {}
    for key, values in pairs.items():
        if len(values) > 1:
            # a second value could hide from the signature check what the service reads
            raise BadPayload(f"parameter {key!r} is given more than once")
        out[key] = values[0]
    return out


def webhook_params() -> dict[str, str]:
    """One flat str -> str dict, whether Vonage sent a GET query, a POST form or a POST JSON body."""
    if request.method == "GET":
        _strict_utf8(request.query_string, "query string")
        params = _flat(request.args.to_dict(flat=False))
    elif request.is_json:
        try:
            body = read_json()  # refuses deep nesting and NUL (hardening.py)
        except JSONInputError as exc:
            raise BadPayload(str(exc)) from None
        if not isinstance(body, dict):
            raise BadPayload("body must be a JSON object")
        params = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in body.items()}
    else:
        if request.mimetype == "application/x-www-form-urlencoded":
            _strict_utf8(request.get_data(cache=True), "form body")
        params = _flat(request.form.to_dict(flat=False))
        if not params:
            _strict_utf8(request.query_string, "query string")
            params = _flat(request.args.to_dict(flat=False))
    for key, value in params.items():
        try:
            key.encode("utf-8")
            value.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates from JSON "\ud800"
            raise BadPayload(f"parameter {key[:40]!r} is not valid Unicode") from None
        if "\x00" in key or "\x00" in value:  # PostgreSQL cannot store it; no SMS carries it
            raise BadPayload(f"parameter {key.replace(chr(0), '')[:40]!r} contains a NUL character")
    return params


class NotAuthenticated(SignatureError):
    """Neither a valid token nor a valid signature (the words go to the log, not to the caller)."""


def _token_matches() -> bool:
    expected = current_app.config["WEBHOOK_TOKEN"]
    given = request.args.getlist("token")
    if not expected or len(given) != 1:
        return False
    return hmac.compare_digest(given[0].encode("utf-8", "replace"), expected.encode("utf-8"))


def check_signature(params: dict[str, str]) -> None:
    """Raise SignatureError unless the webhook is authenticated as configured (see the module's docstring).

    `params` loses the `token` field of the query string: it is ours, not Vonage's, and is never stored."""
    cfg = current_app.config
    secret, token = cfg["VONAGE_SIGNATURE_SECRET"], cfg["WEBHOOK_TOKEN"]
    raw = dict(params)
    if "token" in request.args:
        params.pop("token", None)
    if token and _token_matches():
        return
    if secret:
        method, max_age = cfg["VONAGE_SIGNATURE_METHOD"], cfg["VONAGE_SIGNATURE_MAX_AGE"]
        try:
            verify(params, secret, method, max_age)
        except SignatureError:
            if raw == params:
                raise
            verify(raw, secret, method, max_age)  # signed with our ?token= among the fields
        return
    if token:
        raise NotAuthenticated("no valid token (WEBHOOK_TOKEN)")


def _error(status: int, message: str, field: str | None = None) -> tuple[Response, int]:
    body = {"error": message}
    if field:
        body["field"] = field
    resp = jsonify(body)
    if status == 401:  # RFC 9110: a 401 carries a challenge; here a signature or ?token=<WEBHOOK_TOKEN>
        resp.headers["WWW-Authenticate"] = 'Token realm="webhooks"'
    return resp, status


def _handle(service) -> tuple[Response | str, int]:
    try:
        params = webhook_params()
        check_signature(params)
        service(params)
    except BadPayload as exc:
        return _error(400, str(exc))
    except NotAuthenticated as exc:
        log.warning("webhook %s refused from %s: %s", request.path, request.remote_addr, exc)
        return _error(401, "not authenticated: a valid Vonage signature or ?token=<WEBHOOK_TOKEN> is required")
    except SignatureError as exc:
        log.warning("webhook %s refused from %s: %s", request.path, request.remote_addr, exc)
        message = f"invalid signature: {exc}"
        if current_app.config["WEBHOOK_TOKEN"]:
            message += " (or give ?token=<WEBHOOK_TOKEN>)"
        return _error(401, message)
    except services.ServiceError as exc:
        return _error(exc.status, exc.message, exc.field)
    return "", 204


@bp.route("/inbound-sms", methods=["GET", "POST"])
@bp.route("/inbound", methods=["GET", "POST"])  # the original tutorial's path
def inbound_sms():
    return _handle(services.receive_sms)


@bp.route("/delivery-receipt", methods=["GET", "POST"])
def delivery_receipt():
    return _handle(services.record_receipt)
