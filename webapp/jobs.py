"""Scheduled housekeeping: each job runs on its own interval, in its own app context, isolated.

A job that raises is logged (its name and the exception's class: never data), counted and shown on
`/healthz`; the other jobs and the sending loop never notice. Jobs run wherever the outbox worker runs
(`python -m webapp`, the gunicorn worker, `flask outbox work`); several processes may run them at once, since
each job takes its rows with SKIP LOCKED (PostgreSQL) or the writer lock (SQLite).

Add a job by adding it to `default_jobs()`. Tests run them directly with `run_once()`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import Flask

from . import callbacks, idempotency
from .extensions import db
from .models import utcnow
from .outbox import reconcile_due, recover_interrupted
from .services.expiry import expire_due_chats
from .services.inbound import flush_expired_parts
from .services.retention import purge_old_texts

log = logging.getLogger(__name__)

EXPIRE_EVERY_SECONDS = 2.0
PURGE_EVERY_SECONDS = 24 * 3600.0


@dataclass
class Job:
    name: str
    every: float  # seconds between runs
    run: Callable[[], Any]
    next_at: float = 0.0
    runs: int = 0
    failures: int = 0  # consecutive
    last_ok_at: datetime | None = None
    last_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def status(self) -> dict[str, Any]:
        return {
            "every_seconds": self.every,
            "runs": self.runs,
            "failing": self.failures > 0,
            "consecutive_failures": self.failures,
            "last_ok_at": self.last_ok_at.isoformat() if self.last_ok_at else None,
            "last_error": self.last_error,
        }


def default_jobs(app: Flask) -> list[Job]:
    """The housekeeping every deployment runs."""
    return [
        Job("recover-interrupted-sends", 1.0, recover_interrupted),
        Job("reconcile-unconfirmed-sends", 1.0, reconcile_due),
        Job("flush-incomplete-multipart", 2.0, flush_expired_parts),
        # a chat ends within this many seconds after its deadline (plus the time to end the ones before it)
        Job("expire-chats", EXPIRE_EVERY_SECONDS, expire_due_chats),
        Job("purge-old-texts", PURGE_EVERY_SECONDS, purge_old_texts),  # RETENTION_DAYS; at start, then daily
        Job("purge-old-callbacks", 3600.0, callbacks.purge),  # delivered events, idle lanes
        Job("purge-idempotency-keys", 3600.0, idempotency.purge_keys),
    ]


def run_job(app: Flask, job: Job) -> bool:
    """Run one job now, isolated; True when it finished without raising."""
    with job.lock, app.app_context():
        job.runs += 1
        try:
            job.run()
        except Exception as exc:
            db.session.rollback()
            job.failures += 1
            job.last_error = type(exc).__name__
            log.error("job %s failed (%s); %d time(s) in a row", job.name, type(exc).__name__, job.failures)
            log.debug("job %s failure", job.name, exc_info=True)
            return False
        job.failures = 0
        job.last_error = None
        job.last_ok_at = utcnow()
        return True


def run_once(app: Flask, names: Iterable[str] | None = None) -> dict[str, bool]:
    """Run the app's jobs (or those named) once, now (tests, `flask jobs run`). {name: finished without error}."""
    wanted = set(names) if names is not None else None
    jobs = app.extensions.get("jobs") or default_jobs(app)
    return {job.name: run_job(app, job) for job in jobs if wanted is None or job.name in wanted}


class Scheduler:
    """A thread that runs each job when it is due."""

    def __init__(self, app: Flask, jobs: list[Job] | None = None) -> None:
        self.app = app
        self.jobs = jobs if jobs is not None else default_jobs(app)
        app.extensions["jobs"] = self.jobs  # /healthz reports their state
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, name="jobs", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self.thread:
            self.thread.join(timeout=10)

    def run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for job in self.jobs:
                if self._stop.is_set():
                    return
                if job.next_at <= now:
                    try:
                        run_job(self.app, job)
                    except Exception:  # not even app_context() may stop the loop
                        log.exception("job %s could not run", job.name)
                    job.next_at = time.monotonic() + job.every
            upcoming = min((job.next_at for job in self.jobs), default=time.monotonic() + 1.0)
            self._stop.wait(max(upcoming - time.monotonic(), 0.05))
