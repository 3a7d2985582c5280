"""SMS proxy: two people text each other through a masked number, run by a dispatcher.

`create_app(overrides)` builds the app: config, extensions, blueprints, CLI. It starts no threads;
boot.py starts the background work for `python -m webapp`, gunicorn and `flask outbox work`.
"""

from __future__ import annotations

import logging
import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from . import config as config_module
from . import doorbell, idempotency
from .config import check_events, resolve_gateway
from .database import (
    MIGRATIONS,
    DatabaseBusy,
    engine_options,
    install_sqlite_pragmas,
    install_write_gate,
    normalise_url,
)
from .extensions import csrf, db, login_manager, migrate, socketio
from .startup import prepare_database

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
JSON_PATHS = ("/chat",)  # the tutorial's POST /chat (and nothing else under /chat...: that is the dashboard)
JSON_PREFIXES = ("/api/", "/webhooks/")


def wants_json(path: str) -> bool:
    return path in JSON_PATHS or path.startswith(JSON_PREFIXES)


def _secret_key(instance: Path) -> str:
    """A random key kept in instance/, so sessions survive restarts without configuration."""
    path = instance / "secret_key"
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_hex(32)
    path.write_text(key)
    path.chmod(0o600)
    return key


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    app = Flask(
        __name__,
        instance_path=str(ROOT / "instance"),
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    cfg: dict[str, Any] = dict(config_module.DEFAULTS)
    if not (overrides or {}).get("TESTING"):
        cfg.update(config_module.from_env())
    cfg.update(overrides or {})
    cfg["SMS_GATEWAY"] = resolve_gateway(cfg)
    check_events(cfg)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    if not cfg["SECRET_KEY"]:
        cfg["SECRET_KEY"] = _secret_key(Path(app.instance_path))
    url = cfg.get("SQLALCHEMY_DATABASE_URI") or cfg["DATABASE_URL"] or (
        "sqlite:///" + os.path.join(app.instance_path, "smsproxy.db")
    )
    url = normalise_url(url)
    cfg["SQLALCHEMY_DATABASE_URI"] = url
    cfg.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(url))
    cfg["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=cfg["SESSION_HOURS"])
    cfg.setdefault("WTF_CSRF_TIME_LIMIT", None)  # dashboards stay open all shift
    cfg.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    cfg.setdefault("SESSION_COOKIE_HTTPONLY", True)
    cfg.setdefault("SESSION_COOKIE_SECURE", not cfg["DEBUG"] and not cfg.get("TESTING"))
    cfg.setdefault("MAX_CONTENT_LENGTH", 256 * 1024)
    app.config.update(cfg)
    app.debug = bool(cfg["DEBUG"])

    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS), render_as_batch=True, compare_type=True)
    csrf.init_app(app)
    login_manager.init_app(app)
    with app.app_context():
        install_sqlite_pragmas(db.engine)
    doorbell.install()
    idempotency.install()
    install_write_gate()

    from . import live  # registers the Socket.IO handlers before init_app

    live.subscribe()

    socketio.init_app(
        app,
        async_mode="threading",
        message_queue=message_queue_url(cfg["SOCKETIO_MESSAGE_QUEUE"]),
        channel=cfg.get("SOCKETIO_CHANNEL") or "flask-socketio",
        cors_allowed_origins=[],  # same origin only
    )

    from .gateway import build_gateway

    app.extensions["sms_gateway"] = build_gateway(app.config)

    from . import api, cli, dashboard, webhooks

    app.register_blueprint(webhooks.bp)
    app.register_blueprint(api.bp)
    dashboard.init_app(app)
    cli.init_app(app)

    from .callbacks import delivery_health

    @app.get("/healthz")
    def healthz():
        jobs = app.extensions.get("jobs") or []
        return jsonify(
            {
                "status": "ok",
                "gateway": app.config["SMS_GATEWAY"],
                "jobs": {job.name: job.status() for job in jobs},
                "events": _events_health(),  # callbacks to EVENTS_URL: failing now? given up?
            }
        )

    def _events_health() -> dict[str, Any]:
        try:
            return delivery_health()
        except Exception as exc:  # the database is away: say so, but /healthz itself still answers
            db.session.rollback()
            return {"configured": True, "failing": None, "error": f"unknown ({type(exc).__name__})"}

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if wants_json(request.path):
            return jsonify({"error": exc.description or exc.name}), exc.code
        return exc

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        if isinstance(exc, HTTPException):
            return _http_error(exc)
        if isinstance(exc, DatabaseBusy):
            db.session.rollback()
            return jsonify({"error": str(exc)}), 503
        log.exception("unexpected error on %s %s", request.method, request.path)
        db.session.rollback()
        if request.path.startswith("/webhooks/"):
            # 503: Vonage retries, and nothing was acknowledged that we did not store
            return jsonify({"error": "temporarily unable to store this message; retry"}), 503
        return jsonify({"error": "internal error"}), 500

    return app


__all__ = ["create_app", "prepare_database"]


def message_queue_url(url: str | None) -> str | None:
    """The Redis URL with socket timeouts added, so a hung Redis delays an emit by seconds, never forever.

    Without them redis-py waits indefinitely and the request that emitted hangs (docs/deploy.md).
    """
    if not url:
        return None
    if url.startswith(("redis://", "rediss://")):
        for name in ("socket_timeout", "socket_connect_timeout"):
            if name + "=" not in url:
                url += ("&" if "?" in url else "?") + name + "=2"
    return url
