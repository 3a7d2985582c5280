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
from .config import startup_warnings
from .logs import configure_logging
from .startup import prepare_database

log = logging.getLogger("webapp")


def load_app(env_file: str = ".env") -> Flask:
    """The configured app with its schema ready. Raises config.ConfigError when the settings cannot work or are
    unsafe (`create_app` runs config.check_security for every entry point)."""
    load_dotenv(env_file)
    app = create_app()
    configure_logging(app.config["LOG_LEVEL"])
    prepare_database(app)
    for warning in startup_warnings(app.config):
        log.warning("%s", warning)
    cfg = app.config
    events_host = urlsplit(cfg["EVENTS_URL"]).hostname if cfg["EVENTS_URL"] else None
    if cfg["EVENTS_URL"].startswith("http://") and events_host not in {"127.0.0.1", "localhost", "::1"}:
        log.warning("EVENTS_URL is plain http: event callbacks (with full numbers and texts) travel unencrypted")
    return app
