"""Benchmarks 4 and 6, size and memory.

4. With 100,000 active chats and 1,000,000 stored messages, webhook latency must stay within 1.2x its value at
   100 chats, and the first page of the chats list must render in under 150 ms.
6. Peak RSS of one web process with 50 dashboards connected and that data loaded.

    python -m bench.size [--databases sqlite,postgres] [--chats 100000] [--messages 1000000] [--dashboards 50]

Per database: seed 100 chats, start the production gunicorn, measure 300 sequential signed webhooks (one
keep-alive connection) and the chats list; then bulk-load up to the full size with the server running, and
measure again; then connect the dashboards, push 100 webhooks to them, render the list 20 times, and read
the worker's peak RSS (VmHWM). Seeding 1,000,000 messages takes about a minute per database.
"""

from __future__ import annotations

import argparse
import random
import time

import requests
import socketio
from sqlalchemy import insert

from .common import (
    API_TOKEN,
    Server,
    app_env,
    app_for,
    inbound_form,
    machine,
    open_database,
    peak_rss_mib,
    percentile,
    rss_mib,
    seed_chats,
    table,
    workdir,
)
from .live import operator_cookie

PAGES = {"api": "/api/chats?status=active&limit=50", "dashboard": "/"}


def seed_messages(url: str, count: int, chats: int) -> None:
    from webapp.extensions import db
    from webapp.models import Message, utcnow

    app = app_for(url)
    rng = random.Random(4)
    with app.app_context():
        now = utcnow()
        if db.engine.dialect.name == "postgresql":
            _copy_messages(db.engine, count, chats, rng, now)
            db.engine.dispose()
            return
        batch = 20_000
        for start in range(0, count, batch):
            rows = []
            for i in range(start, min(count, start + batch)):
                chat = rng.randrange(1, chats + 1)
                inbound = i % 2 == 0
                rows.append(
                    {
                        "chat_id": chat,
                        "direction": "in" if inbound else "out",
                        "kind": "sms" if inbound else "relay",
                        "side": "a" if inbound else "b",
                        "from_number": f"+4471{chat:08d}",
                        "to_number": "+447700900001",
                        "text": f"seeded message {i}: the car is outside",
                        "status": "received" if inbound else "delivered",
                        "provider_id": f"SEED{i:09d}" if inbound else None,
                        "attempts": 0 if inbound else 1,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            db.session.execute(insert(Message), rows)
            db.session.commit()
        db.session.remove()
        db.engine.dispose()


def _copy_messages(engine, count: int, chats: int, rng: random.Random, now) -> None:
    """PostgreSQL: COPY is ~10x faster than batched INSERTs for a million rows."""
    cols = (
        "chat_id",
        "direction",
        "kind",
        "side",
        "from_number",
        "to_number",
        "text",
        "status",
        "provider_id",
        "attempts",
        "created_at",
        "updated_at",
    )
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        with conn.cursor() as cur, cur.copy(f"COPY messages ({', '.join(cols)}) FROM STDIN") as copy:
            for i in range(count):
                chat = rng.randrange(1, chats + 1)
                inbound = i % 2 == 0
                copy.write_row(
                    (
                        chat,
                        "in" if inbound else "out",
                        "sms" if inbound else "relay",
                        "a" if inbound else "b",
                        f"+4471{chat:08d}",
                        "+447700900001",
                        f"seeded message {i}: the car is outside",
                        "received" if inbound else "delivered",
                        f"SEED{i:09d}" if inbound else None,
                        0 if inbound else 1,
                        now,
                        now,
                    )
                )
        conn.commit()
    finally:
        raw.close()


def webhook_latency(server: Server, keys: list[tuple[str, str]], n: int, tag: str) -> tuple[float, float]:
    rng = random.Random(5)
    s = requests.Session()
    forms = [inbound_form(*rng.choice(keys), f"size {i}", f"{tag}{time.time_ns()}-{i}") for i in range(n + 30)]
    for f in forms[:30]:
        s.post(server.url + "/webhooks/inbound-sms", data=f, timeout=30)
    lat = []
    for f in forms[30:]:
        t0 = time.perf_counter()
        r = s.post(server.url + "/webhooks/inbound-sms", data=f, timeout=30)
        lat.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 204, r.text
    return percentile(lat, 50), percentile(lat, 99)


def page_latency(server: Server, path: str, cookie: str, n: int = 20) -> tuple[float, int]:
    s = requests.Session()
    headers = {"Authorization": f"Bearer {API_TOKEN}", "Cookie": f"session={cookie}"}
    s.get(server.url + path, headers=headers, timeout=30)
    lat, status = [], 0
    for _ in range(n):
        t0 = time.perf_counter()
        r = s.get(server.url + path, headers=headers, timeout=30)
        lat.append((time.perf_counter() - t0) * 1000)
        status = r.status_code
    return percentile(lat, 50), status


def run_database(kind: str, chats: int, messages: int, dashboards: int) -> tuple[list, list]:
    with workdir("bench-size-") as wd:
        database = open_database(kind, wd)
        server = None
        clients: list[socketio.Client] = []
        try:
            small = seed_chats(database.url, 100)
            cookie = operator_cookie(database.url)
            server = Server("gunicorn", app_env(database.url, LOG_LEVEL="WARNING"), wd)
            w_small = webhook_latency(server, small, 300, "S")
            pages_small = {k: page_latency(server, p, cookie) for k, p in PAGES.items()}

            t0 = time.perf_counter()
            keys = seed_chats(database.url, chats - 100, proxies=20, start=100)
            seed_messages(database.url, messages, chats)
            seeded = time.perf_counter() - t0
            w_big = webhook_latency(server, keys, 300, "B")
            pages_big = {k: page_latency(server, p, cookie) for k, p in PAGES.items()}

            for _ in range(dashboards):
                c = socketio.Client(reconnection=False)
                c.connect(
                    server.url,
                    headers={"Cookie": f"session={cookie}"},
                    transports=["websocket"],
                    wait_timeout=10,
                )
                clients.append(c)
            webhook_latency(server, keys, 100, "D")
            for p in PAGES.values():
                page_latency(server, p, cookie)
            pids = server.pids()
            worker = pids[1:] or pids  # gunicorn: the worker process, not the master
            size_row = [
                kind,
                f"{chats:,} / {messages:,}",
                f"{seeded:.0f} s",
                f"{w_small[0]:.1f} / {w_small[1]:.1f}",
                f"{w_big[0]:.1f} / {w_big[1]:.1f}",
                f"{w_big[0] / w_small[0]:.2f}x",
                f"{pages_small['api'][0]:.1f}",
                f"{pages_big['api'][0]:.1f}",
                f"{pages_big['dashboard'][0]:.1f} (HTTP {pages_big['dashboard'][1]})",
            ]
            mem_row = [
                kind,
                dashboards,
                f"{chats:,} / {messages:,}",
                f"{rss_mib(worker):.0f}",
                f"{peak_rss_mib(worker):.0f}",
            ]
            return size_row, mem_row
        finally:
            for c in clients:
                c.disconnect()
            if server:
                server.stop()
            database.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--databases", default="sqlite,postgres")
    p.add_argument("--chats", type=int, default=100_000)
    p.add_argument("--messages", type=int, default=1_000_000)
    p.add_argument("--dashboards", type=int, default=50)
    a = p.parse_args()
    rows = [run_database(k, a.chats, a.messages, a.dashboards) for k in a.databases.split(",")]
    print(f"machine: {machine()}")
    print(
        "server: gunicorn -w 1 --threads 100 --no-control-socket webapp.wsgi:app, OUTBOX_WORKER=false, "
        "LOG_LEVEL=WARNING; webhooks signed, sequential on one connection (300 each)"
    )
    print(
        table(
            [
                "database",
                "chats / messages",
                "seeding",
                "webhook p50/p99 ms @100 chats",
                "webhook p50/p99 ms @size",
                "p50 ratio",
                "chats list ms @100 (API)",
                "chats list ms @size (API)",
                "dashboard / ms @size",
            ],
            [r[0] for r in rows],
        )
    )
    print()
    print(
        table(
            ["database", "dashboards", "chats / messages", "worker RSS MiB", "worker peak RSS MiB"],
            [r[1] for r in rows],
        )
    )


if __name__ == "__main__":
    main()
