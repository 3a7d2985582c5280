"""SMS proxy: two people text each other through a masked number, run by a dispatcher.

`create_app(overrides)` builds the app: config, extensions, blueprints, CLI. It starts no threads;
boot.py starts the background work for `python -m webapp`, gunicorn and `flask outbox work`.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, request
from sqlalchemy.exc import DataError
from werkzeug.exceptions import HTTPException

from . import config as config_module
from . import doorbell, hardening, idempotency
from .admission import SocketAdmission, engineio_origin_check
from .config import check_events, check_security, resolve_gateway
from .database import (
    MIGRATIONS,
    DatabaseBusy,
    engine_options,
    install_sqlite_pragmas,
    install_write_gate,
    normalise_url,
)
from .extensions import csrf, db, login_manager, migrate, socketio
from .hardening import JSON_PATHS, JSON_PREFIXES, wants_json
from .instance import prepare_instance, protect_sqlite, secret_key
from .startup import prepare_database

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent


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
    check_security(cfg)  # every entry point builds the app here: each refuses an unsafe configuration
    prepare_instance(Path(app.instance_path))  # 0700
    check_events(cfg)
    if not cfg["SECRET_KEY"]:
        cfg["SECRET_KEY"] = secret_key(Path(app.instance_path))  # 0600
    url = cfg.get("SQLALCHEMY_DATABASE_URI") or cfg["DATABASE_URL"] or (
        "sqlite:///" + os.path.join(app.instance_path, "smsproxy.db")
    )
    url = normalise_url(url)
    protect_sqlite(url)  # 0600 before SQLite creates it with the umask
    cfg["SQLALCHEMY_DATABASE_URI"] = url
    # Never log statement parameters (numbers, message text) in database errors.
    options = cfg.get("SQLALCHEMY_ENGINE_OPTIONS") or engine_options(url)
    cfg["SQLALCHEMY_ENGINE_OPTIONS"] = {**options, "hide_parameters": True}
    cfg["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=cfg["SESSION_HOURS"])
    cfg.setdefault("WTF_CSRF_TIME_LIMIT", None)  # dashboards stay open all shift
    cfg.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    cfg.setdefault("SESSION_COOKIE_HTTPONLY", True)
    if cfg.get("SESSION_COOKIE_SECURE") is None:
        cfg["SESSION_COOKIE_SECURE"] = not cfg["DEBUG"]
    # No "remember me" is offered; should Flask-Login ever set its cookie, it gets the same protection.
    cfg.setdefault("REMEMBER_COOKIE_SECURE", cfg["SESSION_COOKIE_SECURE"])
    cfg.setdefault("REMEMBER_COOKIE_HTTPONLY", True)
    cfg.setdefault("REMEMBER_COOKIE_SAMESITE", "Lax")
    cfg.setdefault("MAX_CONTENT_LENGTH", 256 * 1024)
    app.config.update(cfg)
    app.debug = bool(cfg["DEBUG"])
    hardening.init_app(app)  # before any blueprint: bounded <int:> ids, JSON limits, NUL, CSRF page

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
        cors_allowed_origins=engineio_origin_check(app),  # same origin, or SOCKETIO_ALLOWED_ORIGINS
    )
    # Outermost first: the proxy headers, then admission, then Flask-SocketIO's middleware and the app.
    app.wsgi_app = SocketAdmission(app, app.wsgi_app, socketio)  # type: ignore[method-assign]
    hardening.trust_proxies(app)

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
        jobs = app.extensions.get("jobs")
        if jobs is not None:  # this process runs them
            status = {job.name: job.status() for job in jobs}
        else:  # another process does (server.py), or none
            status = app.extensions.get("jobs_status", dict)()
        return jsonify(
            {
                "status": "ok",
                "gateway": app.config["SMS_GATEWAY"],
                "jobs": status,
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
        if isinstance(exc, DataError | OverflowError):
            # a value the database cannot hold (out of range, NUL): the request's fault, and retrying it
            # cannot help. Logged without its parameters (hide_parameters).
            db.session.rollback()
            log.warning("refused %s %s: %s", request.method, request.path, type(exc).__name__)
            return jsonify({"error": "a value in this request cannot be stored (out of range or not allowed)"}), 400
        log.exception("unexpected error on %s %s", request.method, request.path)
        db.session.rollback()
        if request.path.startswith("/webhooks/"):
            # 503: Vonage retries, and nothing was acknowledged that we did not store
            return jsonify({"error": "temporarily unable to store this message; retry"}), 503
        return jsonify({"error": "internal error"}), 500

    return app


__all__ = ["JSON_PATHS", "JSON_PREFIXES", "create_app", "prepare_database", "wants_json"]


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
