"""What runs in the background of a process: the outbox worker, the event sender (callbacks to EVENTS_URL, in
threads of its own so a slow receiver never delays a relay), the PostgreSQL doorbell listener (wakes both
when another process queued work) and the scheduled jobs. Started by every entry point (boot.py,
`flask outbox work`), so each runs the same set."""

from __future__ import annotations

import logging
import signal
import threading

from flask import Flask
from sqlalchemy.engine import make_url

from .callbacks import EventSender
from .doorbell import Listener
from .jobs import Scheduler
from .logs import configure_logging
from .outbox import Worker

log = logging.getLogger(__name__)


class Background:
    def __init__(self, app: Flask) -> None:
        self.worker = Worker(app)
        self.events = EventSender(app)  # starts only when EVENTS_URL is set
        self.listener = Listener(app)
        self.scheduler = Scheduler(app)

    def start(self) -> None:
        self.worker.start()
        self.events.start()
        self.listener.start()
        self.scheduler.start()

    def stop(self) -> None:
        self.scheduler.stop()
        self.listener.stop()
        self.events.stop()
        self.worker.stop()


def start_background(app: Flask) -> Background:
    background = Background(app)
    background.start()
    return background


def run_outbox_worker(app: Flask) -> None:
    """`flask outbox work`: send until SIGTERM or SIGINT, then finish the message in hand and exit."""
    configure_logging(app.config["LOG_LEVEL"])
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    background = start_background(app)
    backend = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).get_backend_name()
    log.info("outbox worker running (database: %s)", backend)
    stop.wait()
    log.info("outbox worker stopping")
    background.stop()
