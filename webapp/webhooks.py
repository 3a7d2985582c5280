"""Vonage webhooks: inbound SMS and delivery receipts. CSRF-exempt; authenticated by signature."""

from __future__ import annotations

import json
import logging

from flask import Blueprint, Response, jsonify, request

from . import services
from .extensions import csrf

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
csrf.exempt(bp)


class BadPayload(ValueError):
    pass


def webhook_params() -> dict[str, str]:
    """One flat str -> str dict, whether Vonage sent a GET query, a POST form or a POST JSON body."""
    if request.method == "GET":
        return request.args.to_dict()
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise BadPayload("body must be a JSON object")
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in body.items()}
    params = request.form.to_dict()
    return params or request.args.to_dict()


def _error(status: int, message: str, field: str | None = None) -> tuple[Response, int]:
    body = {"error": message}
    if field:
        body["field"] = field
    return jsonify(body), status


@bp.route("/inbound-sms", methods=["GET", "POST"])
@bp.route("/inbound", methods=["GET", "POST"])  # the original tutorial's path
def inbound_sms():
    try:
        params = webhook_params()
        services.receive_sms(params)
    except BadPayload as exc:
        return _error(400, str(exc))
    except services.ServiceError as exc:
        return _error(exc.status, exc.message, exc.field)
    return "", 204


@bp.route("/delivery-receipt", methods=["GET", "POST"])
def delivery_receipt():
    try:
        params = webhook_params()
        services.record_receipt(params)
    except BadPayload as exc:
        return _error(400, str(exc))
    except services.ServiceError as exc:
        return _error(exc.status, exc.message, exc.field)
    return "", 204
