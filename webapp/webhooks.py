"""Vonage webhooks: inbound SMS and delivery receipts. CSRF-exempt; authenticated by signature.

Each arrives as a GET query, a POST form or a POST JSON body (docs/vonage.md §2). Whatever the input, the
answer is 204 (stored), a 4xx JSON error naming the problem, or 503 when storage failed (Vonage retries);
never a 500 or a stack trace.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import unquote_to_bytes

from flask import Blueprint, Response, current_app, jsonify, request

from . import services
from .config import ConfigError
from .extensions import csrf
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
        body = request.get_json(silent=True)
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
    return params


def check_signature(params: dict[str, str]) -> None:
    """Raise SignatureError when signing is configured and `params` are not signed by Vonage right now."""
    cfg = current_app.config
    secret = cfg["VONAGE_SIGNATURE_SECRET"]
    if not secret:
        return
    verify(params, secret, cfg["VONAGE_SIGNATURE_METHOD"], cfg["VONAGE_SIGNATURE_MAX_AGE"])


def _error(status: int, message: str, field: str | None = None) -> tuple[Response, int]:
    body = {"error": message}
    if field:
        body["field"] = field
    return jsonify(body), status


def _handle(service) -> tuple[Response | str, int]:
    try:
        params = webhook_params()
        check_signature(params)
        service(params)
    except BadPayload as exc:
        return _error(400, str(exc))
    except SignatureError as exc:
        log.warning("webhook %s refused: %s", request.path, exc)
        return _error(401, f"invalid signature: {exc}")
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
