"""Production entry point for gunicorn (threading mode + simple-websocket; docs/deploy.md):

    gunicorn -w 1 --threads 100 --no-control-socket -b 0.0.0.0:8000 webapp.wsgi:app

- one worker per gunicorn (Socket.IO needs sticky sessions; scale out with more single-worker gunicorns
  behind a sticky load balancer and SOCKETIO_MESSAGE_QUEUE=redis://...);
- `--threads` caps open WebSockets plus requests in flight: each connected dashboard holds one thread;
- `--no-control-socket`: gunicorn 27's control socket clashes between instances on one host;
- no `--preload`: the background threads must start in the worker process, not the master.

The schema is created or upgraded at import (as `flask db upgrade` would); the outbox worker, the doorbell and
the jobs start here when OUTBOX_WORKER is true (set it false when `flask outbox work` processes send instead).
"""

from __future__ import annotations

import atexit
import logging
import sys

from sqlalchemy.engine import make_url

from .background import Background, start_background
from .boot import load_app
from .config import ConfigError

try:
    app = load_app()
except ConfigError as exc:
    print(f"configuration error: {exc}", file=sys.stderr)
    # 4 is gunicorn's "App failed to load": the arbiter stops instead of booting the worker again forever
    raise SystemExit(4) from None

background: Background | None = None
if app.config["OUTBOX_WORKER"]:
    background = start_background(app)
    atexit.register(background.stop)

logging.getLogger(__name__).info(
    "SMS proxy ready under gunicorn (gateway: %s, database: %s, message queue: %s)",
    app.config["SMS_GATEWAY"],
    make_url(app.config["SQLALCHEMY_DATABASE_URI"]).get_backend_name(),
    "redis" if app.config["SOCKETIO_MESSAGE_QUEUE"] else "none",
)
