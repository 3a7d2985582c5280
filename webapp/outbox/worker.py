"""The sending loop: `drain_once()` sends what is due now (tests call it directly); `Worker` runs it in a
thread, woken at once when work is queued (wakeups.OUTBOX) and otherwise when the next lane is due.

Housekeeping is not in this loop: it runs as scheduled jobs (jobs.py), so a failing job never stops sending.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait

from flask import Flask, current_app

from .. import wakeups
from ..extensions import db
from .claim import Batch, claim, next_due_in
from .sender import Outcome, gateway, rate_limiter, send_batch, settle_batch

log = logging.getLogger(__name__)


def drain_once(limit: int = 50, executor: Executor | None = None) -> int:
    """Send every message due now, taking at most `limit` lanes per claim. Returns how many sends were tried.

    With OUTBOX_CONCURRENCY > 1 the lanes' batches are sent in parallel threads (`executor`, or a temporary
    pool) and more is claimed as each finishes, so the rate limit stays used; settling stays in this thread,
    so only it touches the database session. A lane is held while its batch is in flight, so texts to one
    person never overlap. If claiming fails, what is in flight is still settled before the error is raised.
    """
    workers = max(int(current_app.config["OUTBOX_CONCURRENCY"]), 1)
    policy = (float(current_app.config["VONAGE_TIMEOUT"]), float(current_app.config["OUTBOX_RETRY_BASE_SECONDS"]),
              int(current_app.config["OUTBOX_MAX_ATTEMPTS"]))
    own = executor is None and workers > 1
    pool = ThreadPoolExecutor(workers, thread_name_prefix="outbox-send") if own else executor
    gw, limiter = gateway(), rate_limiter()
    done = 0
    try:
        if pool is None:
            while batches := claim(limit):
                for batch in batches:
                    outcomes = send_batch(gw, limiter, batch, *policy)
                    settle_batch(batch, outcomes)
                    done += sum(1 for _, result in outcomes if result is not None)
            return done
        in_flight: dict[Future[list[Outcome]], Batch] = {}
        failure: Exception | None = None
        while True:
            room = min(limit, 2 * workers - len(in_flight))
            if failure is None and room > 0:
                try:
                    for batch in claim(room):
                        in_flight[pool.submit(send_batch, gw, limiter, batch, *policy)] = batch
                except Exception as exc:  # settle what is in flight, then let the loop back off
                    db.session.rollback()
                    failure = exc
            if not in_flight:
                break
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                outcomes = future.result()
                settle_batch(in_flight.pop(future), outcomes)
                done += sum(1 for _, result in outcomes if result is not None)
        if failure is not None:
            raise failure
    finally:
        if own and pool is not None:
            pool.shutdown(wait=True)
    return done


class Worker:
    """Background sender for one process. Its loop is nearly impossible to stop: every error is logged,
    followed by a short pause, and the loop goes on."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        workers = max(int(self.app.config["OUTBOX_CONCURRENCY"]), 1)
        if workers > 1:
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="outbox-send")
        self.thread = threading.Thread(target=self.run, name="outbox-worker", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        wakeups.OUTBOX.ring()
        if self.thread:
            self.thread.join(timeout=10)
        if self._pool:
            self._pool.shutdown(wait=False)

    def run(self, drain: Callable[..., int] = drain_once) -> None:
        poll = float(self.app.config["OUTBOX_POLL_SECONDS"])
        while not self._stop.is_set():
            pause = poll
            try:
                with self.app.app_context():
                    drain(executor=self._pool)
                    due = next_due_in()
                    if due is not None:
                        pause = min(poll, max(due, 0.005))
            except Exception as exc:
                log.error("outbox: drain failed (%s); retrying in %.1f s", type(exc).__name__, poll)
                log.debug("outbox drain failure", exc_info=True)
                self._stop.wait(poll)
            wakeups.OUTBOX.wait(pause)
