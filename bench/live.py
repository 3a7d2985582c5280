"""Benchmark 3, live latency: from sending an inbound webhook to the event reaching each of 50 connected,
signed-in Socket.IO dashboards (python-socketio clients, websocket transport), p50/p99. Goal: p99 < 250 ms.

    python -m bench.live [--setups gunicorn-sqlite,redis-2proc-postgres] [--dashboards 50] [--rate 20]

`gunicorn-sqlite`: one production process holds the dashboards and takes the webhooks.
`redis-2proc-postgres`: webhooks go to process A, the dashboards are connected to process B, events cross
through Redis (SOCKETIO_MESSAGE_QUEUE).
Each webhook goes to a different chat, so the event carrying that chat_id identifies it.
"""

from __future__ import annotations

import argparse
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
import socketio

from .common import (
    REDIS_URL,
    Server,
    app_env,
    app_for,
    inbound_form,
    machine,
    open_database,
    percentile,
    seed_chats,
    table,
    workdir,
)

SETUPS = {"gunicorn-sqlite": ("sqlite", False), "redis-2proc-postgres": ("postgres", True)}


def operator_cookie(url: str) -> str:
    """A signed Flask-Login session for a new operator (as tests/scale/live_client.py does)."""
    from webapp.extensions import db
    from webapp.models import Operator
    from webapp.services.operators import start_session

    app = app_for(url)
    with app.app_context():
        op = Operator(name=f"bench-{secrets.token_hex(3)}", password_hash="!unusable")
        db.session.add(op)
        db.session.commit()
        op_id = op.id
        key = start_session(op)  # a server-side session row, as a sign-in makes
        db.session.remove()
        db.engine.dispose()
    serializer = app.session_interface.get_signing_serializer(app)
    return serializer.dumps({"_user_id": str(op_id), "_fresh": True, "sk": key})


def find_chat_id(payload) -> int | None:
    if isinstance(payload, dict):
        value = payload.get("chat_id")
        return value if isinstance(value, int) else None
    return None


def run_setup(name: str, dashboards: int, rate: float, seconds: float) -> list:
    db_kind, two_processes = SETUPS[name]
    total = int(rate * seconds)
    with workdir("bench-live-") as wd:
        database = open_database(db_kind, wd)
        servers: list[Server] = []
        clients: list[socketio.Client] = []
        try:
            keys = seed_chats(database.url, total)
            cookie = operator_cookie(database.url)
            extra = {"LOG_LEVEL": "WARNING", "OUTBOX_WORKER": "false"}
            if two_processes:
                extra.update(SOCKETIO_MESSAGE_QUEUE=REDIS_URL, SOCKETIO_CHANNEL=f"bench-{secrets.token_hex(4)}")
            env = app_env(database.url, **extra)
            servers.append(Server("gunicorn", env, wd))
            if two_processes:
                servers.append(Server("gunicorn", env, wd))
            webhook_url, dashboard_url = servers[0].url, servers[-1].url
            received: dict[int, list[float]] = {}
            lock = threading.Lock()

            def make_handler():
                seen: set[int] = set()

                def on_event(event, data=None):
                    chat_id = find_chat_id(data)
                    if chat_id is None or chat_id in seen:
                        return
                    seen.add(chat_id)
                    now = time.perf_counter()
                    with lock:
                        received.setdefault(chat_id, []).append(now)

                return on_event

            for _ in range(dashboards):
                c = socketio.Client(reconnection=False)
                c.on("*", make_handler())
                c.connect(
                    dashboard_url,
                    headers={"Cookie": f"session={cookie}"},
                    transports=["websocket"],
                    wait_timeout=10,
                )
                clients.append(c)
            time.sleep(1.0)  # the Redis listener of B subscribes at its first client
            # chat ids are 1..total in seeding order (fresh database)
            forms = [
                (i + 1, inbound_form(keys[i][0], keys[i][1], f"live {i}", f"L{time.time_ns()}-{i}"))
                for i in range(total)
            ]
            sent: dict[int, float] = {}
            local = threading.local()

            def post(chat_id: int, form: dict) -> None:
                s = getattr(local, "s", None) or requests.Session()
                local.s = s
                sent[chat_id] = time.perf_counter()
                s.post(webhook_url + "/webhooks/inbound-sms", data=form, timeout=30)

            with ThreadPoolExecutor(8) as pool:
                t0 = time.perf_counter()
                for i, (chat_id, form) in enumerate(forms):
                    delay = t0 + i / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    pool.submit(post, chat_id, form)
            deadline = time.perf_counter() + 15
            while time.perf_counter() < deadline and sum(len(v) for v in received.values()) < total * dashboards:
                time.sleep(0.05)
            lat = [(t - sent[cid]) * 1000 for cid, ts in received.items() if cid in sent for t in ts]
            expected = total * dashboards
            return [
                name,
                dashboards,
                total,
                f"{len(lat)}/{expected}",
                f"{percentile(lat, 50):.1f}",
                f"{percentile(lat, 99):.1f}",
                f"{max(lat):.1f}" if lat else "-",
            ]
        finally:
            for c in clients:
                c.disconnect()
            for s in servers:
                s.stop()
            database.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setups", default="gunicorn-sqlite,redis-2proc-postgres")
    p.add_argument("--dashboards", type=int, default=50)
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--seconds", type=float, default=5.0)
    a = p.parse_args()
    rows = [run_setup(s, a.dashboards, a.rate, a.seconds) for s in a.setups.split(",")]
    print(f"machine: {machine()}")
    print(
        f"load: {a.rate:g} webhooks/s for {a.seconds:g} s, one chat each, {a.dashboards} dashboards "
        "connected "
        "(python-socketio, websocket); gunicorn -w 1 --threads 100 --no-control-socket; OUTBOX_WORKER=false"
    )
    print(table(["setup", "dashboards", "webhooks", "events received", "p50 ms", "p99 ms", "max ms"], rows))


if __name__ == "__main__":
    main()
