"""Expiry lateness: how long after its deadline each chat ends, through the real server and its scheduled job.

    python -m bench.expiry [--db sqlite,postgres] [--chats 100] [--ttl 10] [--history 0]

For each database: start `python -m webapp` (outbox worker and jobs on, simulated gateway) with
CHAT_TTL_SECONDS=<ttl>, create <chats> chats through the API as fast as it answers, wait until all have ended,
and report, per chat, `ended_at - expires_at` (the lateness; the issue's promise is < 15 s) and whether both
end notices went out. `--history N` first adds N ended chats (bulk inserted), to show that the job's cost does
not grow with the history; the second table times one run of the job when nothing is due, in-process.
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import requests

from .common import API_TOKEN, Server, app_env, app_for, machine, open_database, percentile, table, workdir

HEADERS = {"Authorization": f"Bearer {API_TOKEN}"}


def add_history(url: str, n: int) -> None:
    """`n` ended chats (with their ended_at in the past), bulk inserted."""
    if not n:
        return
    from sqlalchemy import insert

    from webapp.extensions import db
    from webapp.models import Chat, utcnow

    app = app_for(url)
    with app.app_context():
        now = utcnow()
        for first in range(0, n, 5000):
            rows = [
                {"a_number": f"+4471{i:06d}55", "b_number": f"+4472{i:06d}66", "proxy_number": "+447700900001",
                 "status": "ended", "ended_reason": "expired", "created_at": now, "ended_at": now,
                 "last_activity_at": now, "expires_at": now, "unread": 0}
                for i in range(first, min(n, first + 5000))
            ]
            db.session.execute(insert(Chat), rows)
            db.session.commit()
        db.session.remove()
        db.engine.dispose()


def idle_run_ms(url: str, runs: int = 20) -> float:
    """Median wall time of one expiry job run with nothing due (the cost paid every 2 s)."""
    from webapp.extensions import db
    from webapp.services.expiry import expire_due_chats

    app = app_for(url)
    times = []
    with app.app_context():
        for _ in range(runs):
            start = time.perf_counter()
            assert expire_due_chats() == []
            times.append((time.perf_counter() - start) * 1000)
        db.session.remove()
        db.engine.dispose()
    return statistics.median(times)


def run(db_kind: str, chats: int, ttl: int, history: int) -> tuple[list, list]:
    with workdir("bench-expiry-") as wd:
        database = open_database(db_kind, wd)
        server = None
        try:
            app_for(database.url)  # schema first, so the history can be added before the server starts
            add_history(database.url, history)
            env = app_env(database.url, CHAT_TTL_SECONDS=ttl, OUTBOX_WORKER="true", SIMULATED_RECEIPT_SECONDS=0)
            server = Server("werkzeug", env, wd)
            session = requests.Session()

            def create(i: int) -> int:
                body = {"a": f"+4473{i:06d}11", "b": f"+4474{i:06d}22"}
                resp = session.post(server.url + "/api/chats", json=body, headers=HEADERS, timeout=30)
                resp.raise_for_status()
                return resp.json()["id"]

            started = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                ids = list(pool.map(create, range(chats)))
            created_in = time.monotonic() - started
            deadline = time.monotonic() + ttl + created_in + 60
            pending = set(ids)
            results: dict[int, dict] = {}
            while pending and time.monotonic() < deadline:
                for cid in list(pending):
                    chat = session.get(f"{server.url}/api/chats/{cid}", headers=HEADERS, timeout=30).json()
                    if chat["status"] == "ended":
                        results[cid] = chat
                        pending.discard(cid)
                time.sleep(0.5)
            lateness = [
                (datetime.fromisoformat(c["ended_at"]) - datetime.fromisoformat(c["expires_at"])).total_seconds()
                for c in results.values()
            ]
            notices = sum(
                1
                for c in results.values()
                for m in c["messages"]
                if m["kind"] == "notice" and m["direction"] == "outbound"
            )
            reasons = {c["ended_reason"] for c in results.values()}
        finally:
            if server:
                server.stop()
        cost = idle_run_ms(database.url)
        database.close()
    row = [
        db_kind,
        history,
        chats,
        f"{created_in:.1f}",
        len(results),
        ",".join(sorted(reasons)) or "-",
        f"{percentile(lateness, 50):.2f}",
        f"{percentile(lateness, 95):.2f}",
        f"{max(lateness, default=float('nan')):.2f}",
        f"{min(lateness, default=float('nan')):.2f}",
        sum(1 for x in lateness if 0 <= x < 15),
        f"{notices}/{2 * chats}",
    ]
    return row, [db_kind, history, f"{cost:.2f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--chats", type=int, default=100)
    parser.add_argument("--ttl", type=int, default=10)
    parser.add_argument("--history", type=int, default=0)
    args = parser.parse_args()
    print(machine())
    print(f"python -m bench.expiry --db {args.db} --chats {args.chats} --ttl {args.ttl} --history {args.history}")
    rows, costs = [], []
    for kind in args.db.split(","):
        row, cost = run(kind, args.chats, args.ttl, args.history)
        rows.append(row)
        costs.append(cost)
    print()
    print(table(
        ["db", "history", "chats", "created in s", "ended", "reason", "late p50 s", "late p95 s", "late max s",
         "late min s", "ended < 15 s late", "end notices"],
        rows,
    ))
    print()
    print(table(["db", "ended chats in history", "one job run, nothing due (ms, median of 20)"], costs))


if __name__ == "__main__":
    main()
