"""`python -m webapp`: load .env, build the app, start the background work, serve on PORT."""

from __future__ import annotations

import logging
import sys


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main() -> int:
    from .background import start_background
    from .boot import load_app
    from .config import ConfigError
    from .extensions import socketio

    try:
        app = load_app()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    cfg = app.config
    background = start_background(app) if cfg["OUTBOX_WORKER"] else None
    logging.getLogger("webapp").info(
        "SMS proxy on http://%s:%d (gateway: %s, database: %s)",
        cfg["HOST"],
        cfg["PORT"],
        cfg["SMS_GATEWAY"],
        _safe_url(cfg["SQLALCHEMY_DATABASE_URI"]),
    )
    try:
        socketio.run(app, host=cfg["HOST"], port=cfg["PORT"], allow_unsafe_werkzeug=True, log_output=False)
    finally:
        if background:
            background.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
