"""Fixtures for scale-out tests: real server processes (gunicorn, `flask outbox work`, throwaway
PostgreSQL and Redis servers) on free loopback ports, each stopped by its own pid when the test ends."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
SECRET = "scale-test-secret"
API_TOKEN = "scale-token-0123456789abcdef0123456789"
PROXY = "+447700900001"
A, B = "+447700900100", "+447700900200"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(database_url: str, **extra: Any) -> dict[str, str]:
    """The environment of an app process: production settings, loopback only, nothing from a .env file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "VONAGE_", "SOCKETIO_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        SECRET_KEY=SECRET,
        DATABASE_URL=database_url,
        PROXY_NUMBERS=PROXY,
        SMS_GATEWAY="simulated",
        API_TOKEN=API_TOKEN,
        LOG_LEVEL="INFO",
        OUTBOX_POLL_SECONDS="0.5",
        SOCKETIO_MESSAGE_QUEUE="",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Proc:
    """A child process with its output in a log file; `stop()` ends it by its pid."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name, self.args, self.env, self.workdir = name, args, env, workdir
        self.log_path = workdir / f"{name}.log"
        self.popen: subprocess.Popen | None = None

    def start(self) -> Proc:
        log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self._log = log
        self.popen = subprocess.Popen(
            self.args,
            env=self.env,
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()
        return self.popen.returncode


def wait_until(predicate, timeout: float = 20, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def gunicorn_args(port: int, threads: int = 100) -> list[str]:
    """The documented production command (docs/deploy.md), on a loopback port."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-w",
        "1",
        "--threads",
        str(threads),
        "--no-control-socket",
        "-k",
        "webapp.httpworker.BufferedThreadWorker",
        "-b",
        f"127.0.0.1:{port}",
        "webapp.wsgi:app",
    ]


class Web:
    def __init__(self, proc: Proc, port: int) -> None:
        self.proc, self.port = proc, port
        self.url = f"http://127.0.0.1:{port}"

    def wait_ready(self, timeout: float = 30) -> Web:
        def ready() -> bool:
            if not self.proc.alive():
                raise AssertionError(f"{self.proc.name} exited:\n{self.proc.log()}")
            try:
                return requests.get(self.url + "/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(ready, timeout, 0.1, f"{self.proc.name} to answer /healthz")
        return self


@pytest.fixture
def processes(tmp_path) -> Iterator[list[Proc]]:
    """Start processes with `start_web`/`start_proc`; every one is stopped at the end of the test."""
    started: list[Proc] = []
    yield started
    for proc in reversed(started):
        proc.stop()


@pytest.fixture
def start_web(processes, tmp_path):
    def start(name: str, env: dict[str, str], threads: int = 100) -> Web:
        port = free_port()
        proc = Proc(name, gunicorn_args(port, threads), env, tmp_path).start()
        processes.append(proc)
        return Web(proc, port).wait_ready()

    return start


@pytest.fixture
def start_proc(processes, tmp_path):
    def start(name: str, args: list[str], env: dict[str, str]) -> Proc:
        proc = Proc(name, args, env, tmp_path).start()
        processes.append(proc)
        return proc

    return start


def flask_args(*args: str) -> list[str]:
    return [sys.executable, "-m", "flask", "--app", "webapp", *args]


# --- throwaway servers (for tests that stop and restart them) ---------------------------------------------

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


class ThrowawayPostgres:
    """A private PostgreSQL cluster on a free port: restarting it disturbs nobody."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.data = workdir / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *args: str) -> None:
        cmd = [str(PG_BIN / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)

    def init(self) -> ThrowawayPostgres:
        self.dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._as_postgres("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres")
        return self

    def start(self) -> None:
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off"
        self._as_postgres(
            "pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.dir / "server.log"), "-w", "start"
        )

    def stop(self) -> None:
        self._as_postgres("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


@pytest.fixture
def throwaway_postgres(tmp_path_factory) -> Iterator[ThrowawayPostgres]:
    if not (PG_BIN / "initdb").exists():
        message = f"PostgreSQL server binaries not found in {PG_BIN} (apt-get install postgresql)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    root = Path("/tmp") / f"pgtest-{os.getpid()}-{free_port()}"  # short path: socket names are limited
    pg = ThrowawayPostgres(root).init()
    pg.start()
    try:
        yield pg
    finally:
        with contextlib.suppress(Exception):
            pg.stop()
        shutil.rmtree(root, ignore_errors=True)


class ThrowawayRedis:
    def __init__(self, workdir: Path) -> None:
        self.dir, self.port = workdir, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: Proc | None = None

    def start(self) -> None:
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        self.proc = Proc(f"redis-{self.port}", args, dict(os.environ), self.dir).start()
        import redis

        wait_until(lambda: _pings(redis.Redis(port=self.port, socket_timeout=1)), 10, 0.05, "redis to start")

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()
            self.proc = None


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


@pytest.fixture
def throwaway_redis(tmp_path) -> Iterator[ThrowawayRedis]:
    if shutil.which("redis-server") is None:
        message = "redis-server not installed (apt-get install redis-server)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    server = ThrowawayRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
