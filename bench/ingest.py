"""Benchmark 1, webhook ingest: inbound webhooks per second, p50/p99 latency and CPU ms per webhook, at 32
concurrent keep-alive connections, every request signed (SHA-256 HMAC) with a unique messageId, each routed
to an active chat (the inbound row and its relay are stored in one commit).

    python -m bench.ingest [--setups sqlite,gunicorn-postgres,...] [--seconds 5] [--connections 32]

Setups: `sqlite` = one process, `python -m webapp` (Werkzeug, the embedded default) on SQLite;
`gunicorn-sqlite` / `gunicorn-postgres` = the production command (docs/deploy.md) on each database.
The outbox worker is off (OUTBOX_WORKER=false) so the figures are the webhook path alone; relays stay queued.
Reference (issue 5): the tutorial's Node app, ~4,000 webhooks/s at ~0.25 ms CPU each on this kind of 2-core
machine, storing nothing and checking no signature.
"""

from __future__ import annotations

import argparse
import random
import time

from sqlalchemy import create_engine, text

from .common import (
    PROXY,
    Server,
    app_env,
    cpu_by_pid,
    cpu_delta,
    cpu_seconds,
    inbound_body,
    machine,
    open_database,
    postgres_pids,
    seed_chats,
    table,
    workdir,
)
from .load import run_load

# name: (server, database, gunicorn workers, threads per worker)
SETUPS = {
    "sqlite": ("main", "sqlite", 1, 100),
    "gunicorn-sqlite": ("gunicorn", "sqlite", 1, 100),
    "gunicorn-postgres": ("gunicorn", "postgres", 1, 100),
    # a webhook-only tier (no dashboards attached, so no sticky sessions needed): one process per core
    "tier2-sqlite": ("gunicorn", "sqlite", 2, 32),
    "tier2-postgres": ("gunicorn", "postgres", 2, 32),
    # the same with few threads: fewer threads contending for the GIL (gthread queues the connections)
    "tier1t4-sqlite": ("gunicorn", "sqlite", 1, 4),
    "tier2t4-sqlite": ("gunicorn", "sqlite", 2, 4),
    "tier2t4-postgres": ("gunicorn", "postgres", 2, 4),
}


def stored(url: str, prefix: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM messages WHERE provider_id LIKE :p"), {"p": prefix + "%"}).scalar()
    engine.dispose()
    return int(n or 0)


def run_setup(name: str, seconds: float, connections: int, chats: int, extra_env: dict[str, str]) -> list:
    server_kind, db_kind, workers, threads = SETUPS[name]
    with workdir("bench-ingest-") as wd:
        database = open_database(db_kind, wd)
        try:
            keys = seed_chats(database.url, chats)
            server = Server(
                server_kind, app_env(database.url, **extra_env), wd, threads=threads or 100, workers=workers
            )
            try:
                rng = random.Random(1)
                count = int(seconds * 8000) + 1000  # more bodies than the run can send: each is sent once
                tag = f"I{time.time_ns() % 10**9}-"
                with open(wd / "bodies.txt", "w") as fh:
                    for i in range(count):
                        sender, proxy = rng.choice(keys)
                        fh.write(inbound_body(sender, proxy, f"ride {i} is two minutes away", f"{tag}{i}") + "\n")
                with open(wd / "warm.txt", "w") as fh:
                    for i in range(300):
                        sender, proxy = rng.choice(keys)
                        fh.write(inbound_body(sender, proxy, "warm up", f"W{tag}{i}") + "\n")
                run_load(server.url, wd / "warm.txt", 8, 1.0)
                pids, pg = server.pids(), postgres_pids() if db_kind == "postgres" else []
                cpu0, pg0 = cpu_seconds(pids), cpu_by_pid(pg)
                result = run_load(server.url, wd / "bodies.txt", connections, seconds)
                cpu1 = cpu_seconds(pids)
                pg_cpu = cpu_delta(pg0, cpu_by_pid(postgres_pids())) if pg else 0.0
                ok = result.requests - result.non_2xx
                saved = stored(database.url, tag)
                return [
                    name,
                    server.command,
                    result.requests,
                    f"{result.rate:,.0f}",
                    f"{result.p50_ms:.1f}",
                    f"{result.p99_ms:.1f}",
                    f"{(cpu1 - cpu0) * 1000 / max(ok, 1):.2f}",
                    f"{pg_cpu * 1000 / max(ok, 1):.2f}" if pg else "-",
                    result.non_2xx,
                    f"{saved}/{ok}",
                    result.tool,
                ]
            finally:
                server.stop()
        finally:
            database.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setups", default="sqlite,gunicorn-sqlite,gunicorn-postgres")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--chats", type=int, default=100)
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--unsigned", action="store_true", help="no signature secret (to see what checking costs)")
    a = p.parse_args()
    extra = {"LOG_LEVEL": a.log_level}
    if a.unsigned:
        extra["VONAGE_SIGNATURE_SECRET"] = ""
    rows = [run_setup(s, a.seconds, a.connections, a.chats, extra) for s in a.setups.split(",")]
    print(f"machine: {machine()}")
    print(
        f"load: {a.connections} connections, {a.seconds:g} s, POST /webhooks/inbound-sms, signed sha256, "
        "unique "
        f"messageIds, {a.chats} active chats (proxy {PROXY}), LOG_LEVEL={a.log_level}, OUTBOX_WORKER=false"
        + (", signature secret UNSET" if a.unsigned else "")
    )
    print(
        table(
            [
                "setup",
                "command",
                "requests",
                "webhooks/s",
                "p50 ms",
                "p99 ms",
                "app CPU ms/webhook",
                "PG CPU ms/webhook",
                "non-2xx",
                "stored/2xx",
                "load",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
