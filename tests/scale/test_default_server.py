"""`python -m webapp` as a newcomer starts it: gunicorn's threaded worker serving pages, webhooks and Socket.IO
(websocket and long polling), the outbox in a supervised process of its own, on SQLite and on PostgreSQL.

Each test starts the real command on a free loopback port and stops it by pid. Nothing here measures speed.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from sqlalchemy import bindparam, create_engine, text

from tests.fakes.vonage import FakeVonage, Faults

from .conftest import API_TOKEN, PROXY, Proc, Web, base_env, flask_args, free_port, wait_until
from .live_client import LiveClient, mentions

pytestmark = pytest.mark.slow

OPERATOR, PASSWORD = "maria", "correct horse battery staple"
CSRF_RE = re.compile(r'name="csrf-token" content="([^"]+)"')


def children(pid: int) -> dict[str, int]:
    """The child processes of `pid` by name (/proc/<pid>/comm)."""
    out: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                out[Path(f"/proc/{child}/comm").read_text().strip()] = int(child)
            except OSError:
                continue
    return out


def start_server(tmp_path: Path, processes: list[Proc], env: dict[str, str], name: str = "server") -> Web:
    port = free_port()
    proc = Proc(f"{name}-{port}", [sys.executable, "-m", "webapp"], {**env, "PORT": str(port)}, tmp_path).start()
    processes.append(proc)
    return Web(proc, port).wait_ready()


def sign_in(base: str) -> str:
    """The session cookie after signing in through the form (sent by hand: the cookie is Secure)."""
    page = requests.get(base + "/login", timeout=10)
    token = CSRF_RE.search(page.text).group(1)
    resp = requests.post(
        base + "/login",
        data={"name": OPERATOR, "password": PASSWORD, "csrf_token": token},
        headers={"Cookie": f"session={page.cookies['session']}"},
        allow_redirects=False,
        timeout=10,
    )
    assert resp.status_code == 302, resp.text
    return resp.cookies["session"]


def create_operator(env: dict[str, str], cwd: Path) -> None:
    import subprocess

    made = subprocess.run(
        flask_args("operators", "create", OPERATOR, "--password-stdin"),
        input=PASSWORD + "\n", env=env, cwd=cwd, capture_output=True, text=True, timeout=60,
    )
    assert made.returncode == 0, made.stdout + made.stderr


def test_default_server_serves_websockets_long_polling_and_webhooks(tmp_path, database_url, processes):
    env = base_env(database_url, OUTBOX_POLL_SECONDS="30", SIMULATED_RECEIPT_SECONDS="0.2")
    create_operator(env, tmp_path)
    web = start_server(tmp_path, processes, env)
    server = web.proc.popen
    wait_until(lambda: set(children(server.pid)) == {"smsproxy-web", "smsproxy-outbox"}, what="both processes")
    assert requests.get(web.url + "/healthz", timeout=5).headers["Server"].startswith("gunicorn")

    cookie = sign_in(web.url)
    assert requests.get(web.url + "/", headers={"Cookie": f"session={cookie}"}, timeout=10).status_code == 200
    clients = {t: LiveClient(web.url, cookie, transports=(t,)).connect() for t in ("websocket", "polling")}
    try:
        assert {t: c.sio.transport() for t, c in clients.items()} == {"websocket": "websocket", "polling": "polling"}
        chat = requests.post(web.url + "/api/chats", json={"a": "+447700900100", "b": "+447700900200"},
                             headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10).json()
        resp = requests.post(
            web.url + "/webhooks/inbound-sms",
            data={"msisdn": "447700900100", "to": PROXY.lstrip("+"), "text": "over both", "messageId": "DEF-1"},
            timeout=10,
        )
        assert resp.status_code == 204
        engine = create_engine(database_url)
        with engine.connect() as conn:
            inbound_id = conn.execute(text("SELECT id FROM messages WHERE provider_id = 'DEF-1'")).scalar()
            relay_id = conn.execute(text("SELECT id FROM messages WHERE source_id = :i"), {"i": inbound_id}).scalar()
        engine.dispose()
        for transport, client in clients.items():
            # from the web process: the text arrived
            assert client.wait_for(lambda e, d: e == "chat_changed" and mentions(d, inbound_id)), transport
            # from the outbox process, through the event pipe, although the worker polls only every 30 s: the
            # bell woke it; then the simulated receipt, posted to the webhook from the outbox process
            for status in ("submitted", "delivered"):
                assert client.wait_for(
                    lambda e, d, s=status: e == "message_status" and d["id"] == relay_id and d["status"] == s
                ), (transport, status)
        assert chat["status"] == "active"
    finally:
        for client in clients.values():
            client.close()
    health = requests.get(web.url + "/healthz", timeout=5).json()
    assert {"recover-interrupted-sends", "reconcile-unconfirmed-sends"} <= set(health["jobs"])
    assert web.proc.stop() == 0
    log = web.proc.log_path.read_text()
    assert "development server" not in log.lower()
    assert set(children(server.pid) if server.poll() is None else {}) == set()


@pytest.mark.sqlite_only
def test_debug_uses_the_development_server(tmp_path, database_url, processes):
    web = start_server(tmp_path, processes, base_env(database_url, DEBUG="true"))
    assert requests.get(web.url + "/healthz", timeout=5).headers["Server"].startswith("Werkzeug")
    assert children(web.proc.popen.pid) == {}


@pytest.mark.sqlite_only
def test_outbox_process_off_keeps_the_outbox_in_the_web_process(tmp_path, database_url, processes):
    web = start_server(tmp_path, processes, base_env(database_url, OUTBOX_PROCESS="false"))
    assert set(children(web.proc.popen.pid)) == {"smsproxy-web"}
    health = requests.get(web.url + "/healthz", timeout=5).json()
    assert health["jobs"]["recover-interrupted-sends"]["runs"] >= 1  # run by the web process itself


# --- kill -9 ---------------------------------------------------------------------------------------------

N_CHATS = 6
N_MESSAGES = 300


def rows(database_url: str, texts: list[str]) -> list:
    """What the database says about some texts (for the failure message)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            query = text("SELECT id, kind, status, attempts, error FROM messages WHERE text IN :t")
            return [tuple(r) for r in conn.execute(query.bindparams(bindparam("t", expanding=True)), {"t": texts})]
    finally:
        engine.dispose()


def pending(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(
                "SELECT count(*) FROM messages WHERE direction = 'out' AND "
                "(status IN ('queued', 'sending') OR (status = 'unconfirmed' AND next_attempt_at IS NOT NULL))"
            )).scalar()
    finally:
        engine.dispose()


def test_kill_9_of_either_process_loses_and_doubles_nothing(tmp_path, database_url, processes):
    """Webhooks arrive from 8 threads while relays go out through the real SDK to the fake Vonage (with faults);
    the outbox process, then the web process are SIGKILLed mid-stream. The server starts them again
    by itself; Vonage re-sends what was not acknowledged and posts receipts (retried while refused). Every
    acknowledged text reaches its recipient exactly once."""
    with FakeVonage(tmp_path / "certs") as fake:
        env = base_env(
            database_url,
            SMS_GATEWAY="vonage", WEBHOOKS_ALLOW_UNSIGNED="true",
            VONAGE_API_KEY="key", VONAGE_API_SECRET="secret", VONAGE_TIMEOUT="5",
            VONAGE_REST_HOST=fake.host, VONAGE_API_HOST=fake.host, REQUESTS_CA_BUNDLE=str(fake.ca_path),
            VONAGE_MAX_SENDS_PER_SECOND="500", OUTBOX_LEASE_SECONDS="1", OUTBOX_RECONCILE_SECONDS="3",
            OUTBOX_RETRY_BASE_SECONDS="0.05", OUTBOX_RETRY_CAP_SECONDS="0.3", OUTBOX_CONCURRENCY="4",
            AUTO_REPLY="false", LOG_LEVEL="WARNING",
        )
        web = start_server(tmp_path, processes, env)
        master = web.proc.popen.pid
        fake.dlr_url = web.url + "/webhooks/delivery-receipt"
        fake.dlr_retries, fake.dlr_retry_interval = 40, 0.25
        fake.faults = Faults(throttle=0.05, drop_after_accept=0.03, drop=0.02)

        chats = []
        for i in range(N_CHATS):
            a, b = f"+4477005{1000 + i:04d}", f"+4477006{1000 + i:04d}"
            resp = requests.post(web.url + "/api/chats", json={"a": a, "b": b},
                                 headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10)
            assert resp.status_code == 201, resp.text
            chats.append((a, b))

        def form(i: int) -> dict[str, str]:
            a, b = chats[i % N_CHATS]
            return {"msisdn": (a if i % 2 else b).lstrip("+"), "to": PROXY.lstrip("+"), "text": f"kill {i}",
                    "messageId": f"KILL{i:06d}", "type": "text"}

        acked: set[int] = set()
        lock = threading.Lock()

        def poster(ids: list[int]) -> None:
            session = requests.Session()
            for i in ids:
                try:
                    resp = session.post(web.url + "/webhooks/inbound-sms", data=form(i), timeout=10)
                except requests.RequestException:
                    continue
                if resp.status_code == 204:
                    with lock:
                        acked.add(i)

        def post_all(ids: list[int], threads: int = 8) -> list[threading.Thread]:
            workers = [threading.Thread(target=poster, args=(ids[k::threads],)) for k in range(threads)]
            for w in workers:
                w.start()
            return workers

        todo = list(range(N_MESSAGES))
        workers = post_all(todo)
        victims = ("smsproxy-outbox", "smsproxy-web")
        t0 = time.monotonic()
        for victim, fraction in zip(victims, (0.3, 0.65)):
            while len(acked) < N_MESSAGES * fraction and any(w.is_alive() for w in workers):
                time.sleep(0.005)
            before = children(master)
            os.kill(before[victim], signal.SIGKILL)
            wait_until(lambda v=victim, old=before[victim]: children(master).get(v, old) != old, 15,
                       what=f"{victim} to be started again")
        for w in workers:
            w.join()
        for _ in range(5):  # Vonage re-sends what it did not see acknowledged
            missing = [i for i in todo if i not in acked]
            if not missing:
                break
            for w in post_all(missing, threads=4):
                w.join()
        assert len(acked) == N_MESSAGES

        wanted = {f"kill {i}" for i in acked}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if wanted <= {a["text"] for a in fake.accepted} and pending(database_url) == 0:
                break
            time.sleep(0.2)
        settled = time.monotonic() - t0
        time.sleep(1.0)  # a late duplicate would show here
        counts = Counter(a["text"] for a in fake.accepted if a["text"].startswith("kill "))
        lost = sorted(t for t in wanted if counts[t] == 0)
        doubled = sorted(t for t, c in counts.items() if c > 1)
        assert lost == [] and doubled == [], (lost[:10], doubled[:10], pending(database_url), settled,
                                              rows(database_url, lost[:3]))
        assert set(children(master)) == {"smsproxy-web", "smsproxy-outbox"}
        log = web.proc.log_path.read_text(errors="replace")
        for victim in victims:
            assert ("Worker" if victim == "smsproxy-web" else "Outbox process") in log
