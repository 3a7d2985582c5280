"""Running the outbox sender in the background: inside a web process, or as a process of its own."""

from __future__ import annotations

import logging
import signal
import threading

from flask import Flask
from sqlalchemy.engine import make_url

from .doorbell import Listener
from .logs import configure_logging
from .outbox import Worker

log = logging.getLogger(__name__)


class Background:
    """The outbox worker thread plus, on PostgreSQL, the doorbell that wakes it from other processes."""

    def __init__(self, app: Flask) -> None:
        self.worker = Worker(app)
        self.listener = Listener(app)

    def start(self) -> None:
        self.worker.start()
        self.listener.start()

    def stop(self) -> None:
        self.listener.stop()
        self.worker.stop()


def run_outbox_worker(app: Flask) -> None:
    """`flask outbox work`: send until SIGTERM or SIGINT, then finish the message in hand and exit."""
    configure_logging(app.config["LOG_LEVEL"])
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    background = Background(app)
    background.start()
    backend = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).get_backend_name()
    log.info("outbox worker running (database: %s)", backend)
    stop.wait()
    log.info("outbox worker stopping")
    background.stop()
