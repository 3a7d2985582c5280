"""`python -m webapp`: load .env, build the app, serve on HOST:PORT (server.py: gunicorn's threaded worker, with
the outbox in a process of its own; Werkzeug's development server only with DEBUG=true)."""

from __future__ import annotations

import logging
import sys


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main() -> int:
    from .boot import load_app
    from .config import ConfigError
    from .server import serve

    try:
        app = load_app()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    cfg = app.config
    if not cfg["OUTBOX_WORKER"]:
        outbox = "none (OUTBOX_WORKER=false)"
    elif cfg["DEBUG"] or not cfg["OUTBOX_PROCESS"]:
        outbox = "in the web process"
    else:
        outbox = "in its own process"
    logging.getLogger("webapp").info(
        "SMS proxy on http://%s:%d (gateway: %s, database: %s, server: %s, outbox: %s)",
        cfg["HOST"],
        cfg["PORT"],
        cfg["SMS_GATEWAY"],
        _safe_url(cfg["SQLALCHEMY_DATABASE_URI"]),
        "Werkzeug (DEBUG)" if cfg["DEBUG"] else f"gunicorn gthread, {cfg['WEB_THREADS']} threads",
        outbox,
    )
    return serve(app)


if __name__ == "__main__":
    sys.exit(main())
