"""What every start needs before serving: the schema brought up to date and the configured numbers in the pool.

Used by every entry point (boot.py) and by the `flask` commands, which may run before the server ever did.
"""

from __future__ import annotations

import logging

from flask import Flask

from .config import ConfigError
from .database import migrate_schema
from .extensions import db
from .proxy import InvalidNumber
from .services.pool import sync_pool

log = logging.getLogger(__name__)


def prepare_database(app: Flask) -> None:
    """Create or upgrade the schema (migrations/), then load PROXY_NUMBERS into the pool.

    Runs at every start, so the first start on an empty database needs no extra step; `flask db upgrade`
    does the same schema step on its own.
    """
    with app.app_context():
        migrate_schema(db.engine)
        raw = [n for n in app.config["PROXY_NUMBERS"].split(",") if n.strip()]
        try:
            added = sync_pool(raw, app.config["DEFAULT_REGION"])
        except InvalidNumber as exc:
            raise ConfigError(f"PROXY_NUMBERS holds a number that {exc}") from None
        if added:
            log.info("added %d number(s) from PROXY_NUMBERS to the pool", len(added))
