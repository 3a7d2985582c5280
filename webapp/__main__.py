"""`python -m webapp`: load .env, build the app, start the outbox worker, serve on PORT."""

from __future__ import annotations

import logging
import sys

from dotenv import load_dotenv


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main() -> int:
    load_dotenv(".env")
    from . import create_app, prepare_database
    from .config import ConfigError, startup_warnings
    from .extensions import socketio
    from .logs import configure_logging
    from .outbox import Worker

    try:
        app = create_app()
        configure_logging(app.config["LOG_LEVEL"])
        prepare_database(app)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    log = logging.getLogger("webapp")
    cfg = app.config
    for warning in startup_warnings(cfg):
        log.warning("%s", warning)
    worker = None
    if cfg["OUTBOX_WORKER"]:
        worker = Worker(app)
        worker.start()
    log.info(
        "SMS proxy on http://%s:%d (gateway: %s, database: %s)",
        cfg["HOST"],
        cfg["PORT"],
        cfg["SMS_GATEWAY"],
        _safe_url(cfg["SQLALCHEMY_DATABASE_URI"]),
    )
    try:
        socketio.run(app, host=cfg["HOST"], port=cfg["PORT"], allow_unsafe_werkzeug=True, log_output=False)
    finally:
        if worker:
            worker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
