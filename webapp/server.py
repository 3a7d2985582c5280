"""How `python -m webapp` serves (docs/deploy.md §1).

- **Production (the default)**: gunicorn's threaded worker (`gthread`, in the variant of httpworker.py that reads
  each request before giving it a thread, so slow clients hold none), run from here through
  `gunicorn.app.base.BaseApplication`: the same server as the documented gunicorn command. One web process, whose
  threads serve pages, webhooks, the API and Socket.IO (long polling and websockets through simple-websocket;
  Flask-SocketIO runs in threading mode). A connection holds a thread only while a request on it is being
  handled; idle keep-alive connections wait in the worker's selector, and a websocket holds one thread for as
  long as it is open, so WEB_THREADS bounds open websockets plus requests in flight.
- **Both cores**: with OUTBOX_WORKER and OUTBOX_PROCESS (both on by default) the outbox (the sender, the
  PostgreSQL doorbell listener and the housekeeping jobs: background.py) runs in a second process, forked by
  gunicorn's arbiter, which supervises it like its web worker: either child is started again when it dies, and
  both stop with the arbiter (on SIGTERM/SIGINT, and on its death: the outbox process exits when its parent is
  gone, as gunicorn's worker does). They wake and inform each other through siblings.py.
- **`DEBUG=true`**: Werkzeug's development server, with the outbox in threads of the same process.

The app is built once in the arbiter (settings checked, schema migrated) before either child is forked, so a
configuration error stops the start with its message, and a restarted child starts in milliseconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from . import events
from .background import Background
from .extensions import db, socketio
from .jobs import default_jobs
from .siblings import Siblings

log = logging.getLogger(__name__)

GRACEFUL_SECONDS = 10  # requests in flight may finish; websockets are closed after this
PR_SET_PDEATHSIG = 1


def serve(app: Flask) -> int:
    """Serve `app` as its configuration says, until stopped. Returns the exit status."""
    cfg = app.config
    if cfg["DEBUG"]:
        return _serve_development(app)
    outbox_process = bool(cfg["OUTBOX_WORKER"] and cfg["OUTBOX_PROCESS"])
    with app.app_context():
        db.engine.dispose()  # no connection of this process may be shared with the children it forks
    WebServer(app, outbox_process=outbox_process).run()
    return 0


class _NotAProductionDeployment(logging.Filter):
    """Flask-SocketIO logs "Werkzeug appears to be used in a production deployment" whenever stdin is not a
    terminal (a service manager, a pipe), although DEBUG=true chose the development server on purpose: drop
    that misleading line; _serve_development logs an accurate one instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "production deployment" not in record.getMessage()


def _serve_development(app: Flask) -> int:
    cfg = app.config
    logging.getLogger("werkzeug").addFilter(_NotAProductionDeployment())
    log.warning("DEBUG=true: Werkzeug's development server and relaxed cookies, for development only "
                "(without DEBUG, python -m webapp serves with gunicorn)")
    background = Background(app) if cfg["OUTBOX_WORKER"] else None
    if background:
        background.start()
    try:
        socketio.run(app, host=cfg["HOST"], port=cfg["PORT"], use_reloader=False, allow_unsafe_werkzeug=True,
                     log_output=False)
    finally:
        if background:
            background.stop()
    return 0


def _name_process(name: str) -> None:
    """What `ps -o comm` and /proc/<pid>/comm show for this process (at most 15 characters)."""
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as fh:
        fh.write(name[:15])


class WebServer(BaseApplication):
    """gunicorn, configured from the app's settings (HOST, PORT, WEB_THREADS), serving the app built here."""

    def __init__(self, app: Flask, *, outbox_process: bool) -> None:
        self.application = app
        self.siblings = Siblings() if outbox_process else None
        if self.siblings is not None:  # until the outbox process first reports: its jobs, not run yet
            self.siblings.jobs = {job.name: job.status() for job in default_jobs(app)}
        self.background: Background | None = None
        super().__init__()

    def load_config(self) -> None:
        cfg = self.application.config
        host = cfg["HOST"]
        bind = f"[{host}]:{cfg['PORT']}" if ":" in host else f"{host}:{cfg['PORT']}"
        options: dict[str, Any] = {
            "bind": [bind],
            "worker_class": "webapp.httpworker.BufferedThreadWorker",  # gthread, safe from slow clients
            "workers": 1,  # Socket.IO long polling needs every request of a browser in one process
            "threads": int(cfg["WEB_THREADS"]),
            "worker_connections": max(1000, int(cfg["WEB_THREADS"]) + 200),
            "keepalive": 5,
            "graceful_timeout": GRACEFUL_SECONDS,
            "timeout": 30,
            "preload_app": True,  # built once, here; the children are forked from it
            "control_socket_disable": True,  # gunicorn 27's control socket path clashes between instances
            "forwarded_allow_ips": "",  # X-Forwarded-* are trusted through TRUSTED_PROXIES only, in the app
            "limit_request_line": 8190,  # GET webhooks carry the text in the query string
            "accesslog": None,  # query strings of GET webhooks carry numbers and text
            "errorlog": "-",
            "loglevel": str(cfg["LOG_LEVEL"]).lower(),
            "proc_name": "smsproxy",
            "post_worker_init": self._web_started,
            "worker_exit": self._web_exiting,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application

    def run(self) -> None:
        try:
            Supervisor(self).run()
        except RuntimeError as exc:  # gunicorn's way of saying it cannot start (e.g. the port is taken)
            print(f"\nError: {exc}\n", file=sys.stderr)
            sys.exit(1)

    # gunicorn hooks, in the web worker process
    def _web_started(self, worker: Any) -> None:
        _name_process("smsproxy-web")
        with contextlib.suppress(Exception):  # die with the arbiter: its port must be free for a new one at once
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        app = self.application
        if self.siblings is not None:
            self.siblings.serve_web(lambda name, data: _announce_in(app, name, data))
            siblings = self.siblings
            app.extensions["jobs_status"] = lambda: siblings.jobs  # /healthz: as the outbox process reports
        elif app.config["OUTBOX_WORKER"]:
            self.background = Background(app)
            self.background.start()

    def _web_exiting(self, _arbiter: Any, _worker: Any) -> None:
        if self.background is not None:
            self.background.stop()


def _announce_in(app: Flask, name: str, data: dict[str, Any]) -> None:
    with app.app_context():
        events.announce(events.by_name(name), **data)


class Supervisor(Arbiter):
    """gunicorn's arbiter, which also keeps the outbox process running when there is one."""

    def __init__(self, server: WebServer) -> None:
        self.server = server
        self.outbox_pid = 0
        self.outbox_started = 0.0
        self.outbox_restarts = 0
        super().__init__(server)

    def manage_workers(self) -> None:
        super().manage_workers()
        if self.server.siblings is not None and not self.outbox_pid and self.LISTENERS:
            self.spawn_outbox()

    def spawn_outbox(self) -> None:
        if self.outbox_started and time.monotonic() - self.outbox_started < 1.0:
            return  # dying at start: try again at most once a second
        self.outbox_started = time.monotonic()
        pid = os.fork()
        if pid:
            self.outbox_pid = pid
            self.log.info("Booting outbox process with pid: %s", pid)
            return
        status = 1
        try:
            status = self._outbox_child()
        except BaseException:
            log.exception("outbox process failed")
        finally:
            os._exit(status)

    def _outbox_child(self) -> int:
        """The outbox process: the background work of the app, until told to stop or orphaned."""
        for sig in (*self.SIGNALS, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        parent = os.getppid()
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        for listener in self.LISTENERS:
            with contextlib.suppress(OSError):
                listener.close()
        _name_process("smsproxy-outbox")
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(sig, lambda *_: stop.set())
        siblings = self.server.siblings
        assert siblings is not None
        app = self.server.application
        siblings.serve_outbox()
        background = Background(app)
        background.start()
        jobs = app.extensions.get("jobs") or []
        while True:
            siblings.send_jobs({job.name: job.status() for job in jobs})
            if stop.wait(1.0):
                break
            if os.getppid() != parent:
                log.warning("outbox process: the server is gone; stopping")
                break
        background.stop()
        return 0

    def reap_workers(self) -> None:
        self._reap_outbox()
        super().reap_workers()
        if self.outbox_pid and not _alive(self.outbox_pid):  # reaped above as an unknown child
            self._outbox_gone(None)

    def _reap_outbox(self) -> None:
        if not self.outbox_pid:
            return
        try:
            pid, status = os.waitpid(self.outbox_pid, os.WNOHANG)
        except ChildProcessError:
            self._outbox_gone(None)
            return
        if pid:
            self._outbox_gone(status)

    def _outbox_gone(self, status: int | None) -> None:
        how = "exited"
        if status is not None and os.WIFSIGNALED(status):
            how = f"was killed by signal {os.WTERMSIG(status)}"
        elif status is not None:
            how = f"exited with code {os.WEXITSTATUS(status)}"
        if self.LISTENERS:  # not stopping: it will be started again
            self.outbox_restarts += 1
            self.log.error("Outbox process (pid:%s) %s; starting it again", self.outbox_pid, how)
        self.outbox_pid = 0

    def stop(self, graceful: bool = True) -> None:
        pid = self.outbox_pid
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM if graceful else signal.SIGQUIT)
        super().stop(graceful)
        deadline = time.monotonic() + (GRACEFUL_SECONDS if graceful else 2.0)
        while self.outbox_pid and time.monotonic() < deadline:
            self._reap_outbox()
            time.sleep(0.05)
        if self.outbox_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.outbox_pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.outbox_pid, 0)
            self.outbox_pid = 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    # a zombie still answers kill(0): it counts as gone once waited for, which only its parent (us) does
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
