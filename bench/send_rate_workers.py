"""Benchmark 5 across processes: the send rate of separate `flask outbox work` processes on one backlog.
(bench/send_rate.py measures one in-process outbox.) Sends per second at the fake Vonage must stay within
95-100 % of VONAGE_MAX_SENDS_PER_SECOND and never above it (checked over every 1-second window).

    python -m bench.send_rate_workers [--setups one-worker-sqlite,two-workers-postgres] [--limit 30]

`one-worker-*`: one worker process; `two-workers-postgres`: two on one backlog, sharing the account's limit
through Redis (RATE_LIMIT_REDIS_URL). The fake answers each send after --latency seconds (a real round trip).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time

from sqlalchemy import insert

from .common import REDIS_URL, app_env, app_for, machine, open_database, start_fake_vonage, table, workdir

SETUPS = {
    "one-worker-sqlite": ("sqlite", 1),
    "one-worker-postgres": ("postgres", 1),
    "two-workers-postgres": ("postgres", 2),
}


def queue_backlog(url: str, backlog: int) -> None:
    from webapp.extensions import db
    from webapp.models import Message, utcnow

    app = app_for(url)
    with app.app_context():
        now = utcnow()
        rows = [
            {
                "direction": "out",
                "kind": "notice",
                "from_number": "+447700900001",
                "to_number": f"+4475{i:04d}1234",
                "text": f"backlog {i}",
                "status": "queued",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for i in range(backlog)
        ]
        db.session.execute(insert(Message), rows)
        db.session.commit()
        db.session.remove()
        db.engine.dispose()


def windows(stamps: list[float]) -> tuple[float, float]:
    """(max sends in any 1-second window, sends/s over the steady part)."""
    stamps = sorted(stamps)
    worst, j = 0, 0
    for i, t in enumerate(stamps):
        while stamps[j] < t - 1.0:
            j += 1
        worst = max(worst, i - j + 1)
    if len(stamps) < 2:
        return float(worst), 0.0
    return float(worst), (len(stamps) - 1) / (stamps[-1] - stamps[0])


def run_setup(name: str, limit: float, backlog: int, latency: float) -> list:
    db_kind, n_workers = SETUPS[name]
    with workdir("bench-rate-") as wd:
        database = open_database(db_kind, wd)
        fake = start_fake_vonage(wd / "certs", latency)
        stamps: list[float] = []
        lock = threading.Lock()
        original = fake._accept

        def stamp(params, ids, partial):
            with lock:
                stamps.append(time.perf_counter())
            original(params, ids, partial)

        fake._accept = stamp
        procs = []
        try:
            queue_backlog(database.url, backlog)
            env = app_env(
                database.url,
                SMS_GATEWAY="vonage",
                VONAGE_API_KEY="key",
                VONAGE_API_SECRET="secret",
                VONAGE_REST_HOST=fake.host,
                VONAGE_API_HOST=fake.host,
                REQUESTS_CA_BUNDLE=str(fake.ca_path),
                VONAGE_MAX_SENDS_PER_SECOND=str(limit),
                LOG_LEVEL="WARNING",
                RATE_LIMIT_REDIS_URL=REDIS_URL if n_workers > 1 else "",
            )
            for i in range(n_workers):
                log = open(wd / f"worker{i}.log", "ab")  # noqa: SIM115
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "flask", "--app", "webapp", "outbox", "work"],
                        env=env,
                        cwd=wd,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            deadline = time.perf_counter() + backlog / limit * 2 + 20
            while time.perf_counter() < deadline and len(stamps) < backlog:
                time.sleep(0.05)
            worst, steady = windows(stamps)
            return [
                name,
                f"{limit:g}/s",
                f"{len(stamps)}/{backlog}",
                f"{steady:.1f}",
                f"{steady / limit * 100:.0f} %",
                f"{worst:g}",
                "yes" if worst > limit else "no",
            ]
        finally:
            for p in procs:
                p.terminate()
                p.wait(10)
            fake.stop()
            database.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setups", default="one-worker-sqlite,one-worker-postgres,two-workers-postgres")
    p.add_argument("--limit", type=float, default=30.0)
    p.add_argument("--backlog", type=int, default=240)
    p.add_argument("--latency", type=float, default=0.15, help="seconds the fake takes to answer a send")
    a = p.parse_args()
    rows = [run_setup(s, a.limit, a.backlog, a.latency) for s in a.setups.split(",")]
    print(f"machine: {machine()}")
    print(
        f"backlog {a.backlog} queued messages, VONAGE_MAX_SENDS_PER_SECOND={a.limit:g}, `flask outbox work` "
        "through the real SDK to the fake Vonage (TLS)"
    )
    print(
        table(
            [
                "setup",
                "limit",
                "sent",
                "sends/s (steady)",
                "of limit",
                "max in any 1 s window",
                "above limit",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
