"""Posting to our own webhooks in-process, exactly as Vonage would: same fields, signed when
VONAGE_SIGNATURE_SECRET is set, carrying `?token=` when WEBHOOK_TOKEN is set, through the whole WSGI stack.

The simulated gateway (delivery receipts) and the simulator's handsets (inbound texts) use it, so the simulated
path proves the real one instead of taking a shortcut past authentication and parsing.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Flask

from ..signatures import sign


def signed(params: dict[str, str], cfg: Any) -> dict[str, str]:
    """`params` with Vonage's signature fields added when signing is configured."""
    secret = cfg.get("VONAGE_SIGNATURE_SECRET")
    if not secret:
        return params
    out = {**params, "api-key": params.get("api-key") or cfg.get("VONAGE_API_KEY") or "simulator"}
    out["timestamp"] = str(int(time.time()))
    out["sig"] = sign(out, secret, cfg["VONAGE_SIGNATURE_METHOD"])
    return out


def post_webhook(app: Flask, path: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """POST a webhook to this app as Vonage would; (HTTP status, JSON body or {})."""
    query = {"token": app.config["WEBHOOK_TOKEN"]} if app.config.get("WEBHOOK_TOKEN") else None
    resp = app.test_client().post(path, data=signed(params, app.config), query_string=query)
    return resp.status_code, (resp.get_json(silent=True) or {})
