"""Starting the app: one path for `python -m webapp` and gunicorn (`webapp.wsgi`).

`load_app()` reads `.env`, builds the app, configures logging once and brings the database up to date;
the entry point then starts the background work (background.py) when OUTBOX_WORKER is on.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from dotenv import load_dotenv
from flask import Flask

from . import create_app
from .logs import configure_logging
from .startup import prepare_database

log = logging.getLogger("webapp")


def load_app(env_file: str = ".env") -> Flask:
    """The configured app with its schema ready. Raises config.ConfigError when the settings cannot work."""
    load_dotenv(env_file)
    app = create_app()
    configure_logging(app.config["LOG_LEVEL"])
    prepare_database(app)
    cfg = app.config
    if not cfg["API_TOKEN"]:
        log.warning("API_TOKEN is empty: the JSON API is disabled (every /api call answers 503)")
    if not cfg["VONAGE_SIGNATURE_SECRET"]:
        log.warning("VONAGE_SIGNATURE_SECRET is empty: webhooks are accepted unsigned")
    events_host = urlsplit(cfg["EVENTS_URL"]).hostname if cfg["EVENTS_URL"] else None
    if cfg["EVENTS_URL"].startswith("http://") and events_host not in {"127.0.0.1", "localhost", "::1"}:
        log.warning("EVENTS_URL is plain http: event callbacks (with full numbers and texts) travel unencrypted")
    return app
