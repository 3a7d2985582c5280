"""Claim cost against the backlog: CPU per relay while draining with 10,000 texts queued, against 10 queued.

    .venv/bin/python -m bench.backlog [--db sqlite|postgres] [--gateway simulated|fake] [--big 10000]
                                      [--small 10] [--recipients 2]

The texts go to a few recipients (default: the two people of one chat), the case that made the old claim scan
the queue. The app runs in this process; the outbox drains with `drain_once()`; the CPU of this process
(every thread) is read with `time.process_time()`. `--gateway simulated` measures the outbox alone (claim,
settle, commit); `--gateway fake` adds the real SDK over HTTPS to the local fake Vonage. Goal: the per-relay
CPU with the big backlog is at most 1.2x the small one.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, machine, open_database, table, workdir

PROXY = "+447700900001"


def _recipients(n: int) -> list[str]:
    return [f"+4477007{1000 + i:05d}" for i in range(n)]


def _queue(count: int, recipients: list[str], batch: int = 2000) -> None:
    from webapp.database import begin_write
    from webapp.extensions import db
    from webapp.outbox import queue_message
    from webapp.states import Kind

    done = 0
    while done < count:
        begin_write()
        for i in range(done, min(count, done + batch)):
            queue_message(to=recipients[i % len(recipients)], sender=PROXY, text=f"backlog {i}", kind=Kind.RELAY)
        db.session.commit()
        done = min(count, done + batch)


def _drain_cpu(expected: int) -> tuple[float, float]:
    """Drain until `expected` sends happened (everything queued); (CPU seconds, wall seconds)."""
    from webapp import outbox

    cpu0, wall0 = time.process_time(), time.perf_counter()
    sent = 0
    while sent < expected:
        got = outbox.drain_once()
        if not got:
            time.sleep(0.001)
        sent += got
    return time.process_time() - cpu0, time.perf_counter() - wall0


def run(db: str = "sqlite", gateway: str = "simulated", big: int = 10_000, small: int = 10, recipients: int = 2,
        rounds: int = 50) -> dict[str, Any]:
    import sys

    sys.path.insert(0, str(ROOT))
    from webapp import create_app, prepare_database

    logging.getLogger("webapp").setLevel(logging.WARNING)
    with workdir("backlog-") as base:
        database = open_database(db, base)
        fake = None
        cfg: dict[str, Any] = {
            "TESTING": True, "SECRET_KEY": "bench", "SQLALCHEMY_DATABASE_URI": database.url,
            "PROXY_NUMBERS": PROXY, "SMS_GATEWAY": "simulated", "VONAGE_MAX_SENDS_PER_SECOND": 100_000.0,
        }
        if gateway == "fake":
            from bench.common import start_fake_vonage

            fake = start_fake_vonage(Path(base) / "certs")
            os.environ["REQUESTS_CA_BUNDLE"] = str(fake.ca_path)
            cfg.update(SMS_GATEWAY="vonage", VONAGE_API_KEY="key", VONAGE_API_SECRET="secret", WEBHOOK_TOKEN="t" * 32,
                       VONAGE_REST_HOST=fake.host, VONAGE_TIMEOUT=5)
        try:
            app = create_app(cfg)
            prepare_database(app)
            people = _recipients(recipients)
            with app.app_context():
                _queue(small, people)  # warm up: connections, statement caches, the SDK clients
                _drain_cpu(small)
                small_cpu = small_wall = 0.0
                for _ in range(rounds):
                    _queue(small, people)
                    cpu, wall = _drain_cpu(small)
                    small_cpu, small_wall = small_cpu + cpu, small_wall + wall
                _queue(big, people)
                big_cpu, big_wall = _drain_cpu(big)
        finally:
            if fake is not None:
                fake.stop()
            database.close()
    per_small = small_cpu / (small * rounds) * 1000
    per_big = big_cpu / big * 1000
    return {
        "db": db, "gateway": gateway, "recipients": recipients,
        "small_backlog": small, "small_cpu_ms_per_relay": round(per_small, 3),
        "big_backlog": big, "big_cpu_ms_per_relay": round(per_big, 3),
        "ratio": round(per_big / per_small, 2),
        "small_drain_relays_per_s": round(small * rounds / max(small_wall, 1e-9), 1),
        "big_drain_relays_per_s": round(big / max(big_wall, 1e-9), 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--gateway", choices=["simulated", "fake"], default="simulated")
    p.add_argument("--big", type=int, default=10_000)
    p.add_argument("--small", type=int, default=10)
    p.add_argument("--recipients", type=int, default=2)
    a = p.parse_args()
    print(machine())
    r = run(a.db, a.gateway, a.big, a.small, a.recipients)
    print(table(list(r), [list(r.values())]))


if __name__ == "__main__":
    main()
