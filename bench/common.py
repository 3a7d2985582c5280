"""Shared parts of the benchmark scripts: servers on loopback, seeded data, signed webhooks, CPU accounting.

Every script starts its own processes on free 127.0.0.1 ports, bounds its load by count and time, prints a
table plus the exact configuration, and stops what it started (by pid).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

ROOT = Path(__file__).resolve().parent.parent
PG_BASE = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SIG_SECRET = "bench-signature-secret-0123456789"
SIG_METHOD = "sha256"
API_TOKEN = "bench-token-0123456789abcdef0123456789"
SECRET_KEY = "bench-secret-key"
PROXY = "+447700900001"
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Python {platform.python_version()}, "
        f"{platform.platform()}; load average before the run: {load}"
    )


def sign(params: dict[str, str], secret: str = SIG_SECRET, method: str = SIG_METHOD) -> str:
    """Vonage's webhook signature (docs/vonage.md §3)."""
    s = "".join(f"&{k}={str(v).replace('&', '_').replace('=', '_')}" for k, v in sorted(params.items()) if k != "sig")
    return hmac.new(secret.encode(), s.encode(), getattr(hashlib, method)).hexdigest()


def inbound_form(sender: str, proxy: str, text: str, message_id: str, signed: bool = True) -> dict[str, str]:
    params = {
        "msisdn": sender.lstrip("+"),
        "to": proxy.lstrip("+"),
        "messageId": message_id,
        "text": text,
        "type": "text",
        "keyword": text.split()[0].upper() if text.split() else "",
        "message-timestamp": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "api-key": "benchkey",
    }
    if signed:
        params["timestamp"] = str(int(time.time()))
        params["nonce"] = secrets.token_hex(8)
        params["sig"] = sign(params)
    return params


def inbound_body(*args: Any, **kwargs: Any) -> str:
    return urlencode(inbound_form(*args, **kwargs))


# --- databases ---------------------------------------------------------------------------------------------


@dataclass
class Database:
    url: str
    kind: str
    cleanup: list = field(default_factory=list)

    def close(self) -> None:
        for fn in reversed(self.cleanup):
            with contextlib.suppress(Exception):
                fn()


def sqlite_database(workdir: Path) -> Database:
    return Database(f"sqlite:///{workdir / 'bench.db'}", "sqlite")


def postgres_database() -> Database:
    """A schema of its own in the `test` database, dropped at the end."""
    from sqlalchemy import create_engine, text

    schema = f"bench_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(PG_BASE, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()

    sep = "&" if "?" in PG_BASE else "?"
    url = f"{PG_BASE}{sep}options={quote(f'-csearch_path={schema}')}"
    return Database(url, "postgresql", [drop])


def open_database(kind: str, workdir: Path) -> Database:
    return postgres_database() if kind == "postgres" else sqlite_database(workdir)


def app_for(url: str, **overrides: Any):
    """An in-process app on the bench database (for seeding and checks)."""
    sys.path.insert(0, str(ROOT))
    from webapp import create_app, prepare_database

    cfg = {
        "TESTING": True,
        "SECRET_KEY": SECRET_KEY,
        "SQLALCHEMY_DATABASE_URI": url,
        "PROXY_NUMBERS": PROXY,
        "SMS_GATEWAY": "simulated",
        "API_TOKEN": API_TOKEN,
    }
    cfg.update(overrides)
    app = create_app(cfg)
    prepare_database(app)
    return app


def seed_chats(url: str, chats: int, proxies: int = 1, start: int = 0) -> list[tuple[str, str]]:
    """`chats` active chats, pairs (+4477009xxxxx, +4477008xxxxx) over `proxies` proxy numbers; intros sent.

    Returns (sender, proxy) routing keys, one per chat. Bulk inserts, so 100,000 chats take seconds.
    """
    from sqlalchemy import insert

    from webapp.extensions import db
    from webapp.models import Chat, ProxyNumber, Route, utcnow

    numbers = [f"+4477009{n:05d}" for n in range(1, proxies + 1)]
    app = app_for(url, PROXY_NUMBERS=",".join(numbers))
    keys: list[tuple[str, str]] = []
    with app.app_context():
        assert db.session.query(ProxyNumber).count() >= proxies
        now = utcnow()
        batch = 5000
        for first in range(start, start + chats, batch):
            rows, routes = [], []
            for i in range(first, min(start + chats, first + batch)):
                a, b = f"+4471{i:06d}55", f"+4472{i:06d}66"  # no test-range endings (0001, 0500, ...)
                proxy = numbers[i % proxies]
                rows.append(
                    {
                        "a_number": a,
                        "b_number": b,
                        "proxy_number": proxy,
                        "status": "active",
                        "created_at": now,
                        "last_activity_at": now,
                        "unread": 0,
                    }
                )
                keys.append((a, proxy))
            ids = db.session.scalars(insert(Chat).returning(Chat.id), rows).all()
            for cid, row in zip(ids, rows):
                routes.append({"chat_id": cid, "real_number": row["a_number"], "proxy_number": row["proxy_number"]})
                routes.append({"chat_id": cid, "real_number": row["b_number"], "proxy_number": row["proxy_number"]})
            db.session.execute(insert(Route), routes)
            db.session.commit()
        db.session.remove()
        db.engine.dispose()
    return keys


# --- processes ---------------------------------------------------------------------------------------------


def app_env(url: str, **extra: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "VONAGE_", "SOCKETIO_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        SECRET_KEY=SECRET_KEY,
        DATABASE_URL=url,
        PROXY_NUMBERS=PROXY,
        SMS_GATEWAY="simulated",
        API_TOKEN=API_TOKEN,
        VONAGE_SIGNATURE_SECRET=SIG_SECRET,
        VONAGE_SIGNATURE_METHOD=SIG_METHOD,
        LOG_LEVEL="INFO",
        OUTBOX_WORKER="false",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Server:
    """An app (`python -m webapp`: kind "main", or "werkzeug" with DEBUG=true; or the gunicorn command) on a
    free port, log in a file, stopped by pid. `pids()` covers every process of it (arbiter, web, outbox)."""

    def __init__(self, kind: str, env: dict[str, str], workdir: Path, threads: int = 100, workers: int = 1) -> None:
        self.kind, self.port, self.workdir = kind, free_port(), workdir
        self.url = f"http://127.0.0.1:{self.port}"
        if kind in ("main", "werkzeug"):
            args = [sys.executable, "-m", "webapp"]
            env = {**env, "HOST": "127.0.0.1", "PORT": str(self.port), "WEB_THREADS": str(threads)}
            if kind == "werkzeug":
                env["DEBUG"] = "true"
        else:
            args = [
                sys.executable,
                "-m",
                "gunicorn",
                "-w",
                str(workers),
                "--threads",
                str(threads),
                "--no-control-socket",
                "-k",
                "webapp.httpworker.BufferedThreadWorker",
                "-b",
                f"127.0.0.1:{self.port}",
                "webapp.wsgi:app",
            ]
        self.command = " ".join(args[1:] if args[0] == sys.executable else args)
        self.log_path = workdir / f"server-{self.port}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.popen = subprocess.Popen(
            args, env=env, cwd=workdir, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            health = self.url + "/healthz"
            with contextlib.suppress(OSError), urllib.request.urlopen(health, timeout=2) as resp:
                if resp.status == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError("server did not start")

    def pids(self) -> list[int]:
        """The server's processes: the arbiter and its children (web worker, outbox process)."""
        return [self.popen.pid, *children(self.popen.pid)]

    def named(self) -> dict[str, int]:
        """The server's children by name (smsproxy-web, smsproxy-outbox for `python -m webapp`)."""
        out = {}
        for pid in children(self.popen.pid):
            with contextlib.suppress(OSError):
                out[Path(f"/proc/{pid}/comm").read_text().strip()] = pid
        return out

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()


def children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(k) for k in (task / "children").read_text().split()]
    return out


class FakeVonageProcess:
    """tests/fakes/vonage.py as a process of its own (its CPU is not the app's, and it has its own GIL), every
    accepted send logged as a JSON line with its arrival time (`time`)."""

    def __init__(self, workdir: Path, latency: float = 0.0) -> None:
        self.log_path = workdir / "vonage-accepted.jsonl"
        args = [sys.executable, "-m", "tests.fakes.vonage", "--port", "0", "--cert-dir", str(workdir / "certs"),
                "--log", str(self.log_path)]
        if latency:
            args += ["--slow", "1", "--slow-seconds", str(latency)]
        self.popen = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True,
                                      env={**os.environ, "PYTHONPATH": str(ROOT)})
        line = self.popen.stdout.readline()
        host, ca = line.split()[1], line.split("ca=")[1].strip()
        self.host, self.ca_path = host, ca

    def env(self) -> dict[str, str]:
        """The app settings that send through this fake with the real SDK."""
        return {
            "SMS_GATEWAY": "vonage", "VONAGE_API_KEY": "key", "VONAGE_API_SECRET": "secret",
            "VONAGE_REST_HOST": self.host, "VONAGE_API_HOST": self.host, "REQUESTS_CA_BUNDLE": self.ca_path,
        }

    def accepted(self) -> list[dict[str, Any]]:
        import json

        if not self.log_path.exists():
            return []
        with open(self.log_path, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.endswith("\n")]

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each live process so far."""
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / TICK
    return out


def cpu_seconds(pids: list[int]) -> float:
    return sum(cpu_by_pid(pids).values())


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two samples; a process that started in between counts from zero."""
    return sum(v - before.get(pid, 0.0) for pid, v in after.items())


def postgres_pids() -> list[int]:
    """Every process of the local PostgreSQL server (shared: other users' work counts too)."""
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if (proc / "comm").read_text().strip().startswith("postgres"):
                    out.append(int(proc.name))
    return out


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def peak_rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return total / 1024


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers, *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells[1:])])


def start_fake_vonage(cert_dir: Path, latency: float = 0.0):
    """tests/fakes/vonage.FakeVonage, started; `latency` > 0 makes it answer each send after that many seconds.

    (The fake sets TCP_NODELAY on its sockets: without it every send stalled ~40 ms on Nagle + delayed ACK.)
    """
    sys.path.insert(0, str(ROOT))
    from tests.fakes.vonage import FakeVonage, Faults

    faults = Faults(slow=1.0, slow_seconds=latency) if latency else None
    return FakeVonage(cert_dir, faults=faults).start()
