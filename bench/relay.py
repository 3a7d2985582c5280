"""Benchmark 2, relay latency: from sending an inbound webhook to the relayed SMS arriving at a local fake
Vonage (TLS, the real SDK), p50/p99, at a steady 100 relays/s. Goal: p50 < 20 ms, p99 < 100 ms.

    python -m bench.relay [--setups gunicorn-sqlite,gunicorn-postgres,workers-postgres] [--rate 100]

Setups: `gunicorn-*` = the production command with the outbox worker in the web process (woken in-process);
`workers-postgres` = web process with OUTBOX_WORKER=false plus 2 separate `flask outbox work` processes,
woken across processes by the PostgreSQL doorbell (LISTEN/NOTIFY). VONAGE_MAX_SENDS_PER_SECOND is set above
the offered rate so the limiter does not queue.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from .common import (
    Server,
    app_env,
    inbound_form,
    machine,
    open_database,
    percentile,
    seed_chats,
    start_fake_vonage,
    table,
    workdir,
)

SETUPS = {
    "gunicorn-sqlite": ("sqlite", 0),
    "gunicorn-postgres": ("postgres", 0),
    "workers-postgres": ("postgres", 2),
}


def run_setup(name: str, rate: float, seconds: float, chats: int) -> list:
    db_kind, separate_workers = SETUPS[name]
    with workdir("bench-relay-") as wd:
        database = open_database(db_kind, wd)
        fake = start_fake_vonage(wd / "certs")
        arrived: dict[str, float] = {}
        lock = threading.Lock()
        original = fake._accept

        def stamp(params, ids, partial):  # when the send request reached "Vonage"
            with lock:
                arrived.setdefault(params.get("text", ""), time.perf_counter())
            original(params, ids, partial)

        fake._accept = stamp
        workers: list[subprocess.Popen] = []
        server = None
        try:
            keys = seed_chats(database.url, chats)
            env = app_env(
                database.url,
                SMS_GATEWAY="vonage",
                VONAGE_API_KEY="key",
                VONAGE_API_SECRET="secret",
                VONAGE_REST_HOST=fake.host,
                VONAGE_API_HOST=fake.host,
                REQUESTS_CA_BUNDLE=str(fake.ca_path),
                VONAGE_MAX_SENDS_PER_SECOND=str(rate * 5),
                OUTBOX_WORKER="false" if separate_workers else "true",
                OUTBOX_POLL_SECONDS="1",
                LOG_LEVEL="WARNING",
            )
            server = Server("gunicorn", env, wd)
            for i in range(separate_workers):
                log = open(wd / f"worker{i}.log", "ab")  # noqa: SIM115
                workers.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "flask", "--app", "webapp", "outbox", "work"],
                        env=env,
                        cwd=wd,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            time.sleep(1.5)  # workers up and listening
            sent: dict[str, float] = {}
            statuses: list[int] = []
            local = threading.local()

            def post(i: int, text: str, form: dict) -> None:
                session = getattr(local, "s", None) or requests.Session()
                local.s = session
                sent[text] = time.perf_counter()
                statuses.append(session.post(server.url + "/webhooks/inbound-sms", data=form, timeout=30).status_code)

            rng = random.Random(2)
            total = int(rate * seconds)
            forms = []
            for i in range(total):
                sender, proxy = rng.choice(keys)
                text = f"relay-{i}-{rng.random():.6f}"
                forms.append((text, inbound_form(sender, proxy, text, f"R{time.time_ns()}-{i}")))
            with ThreadPoolExecutor(16) as pool:
                t0 = time.perf_counter()
                for i, (text, form) in enumerate(forms):
                    delay = t0 + i / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    pool.submit(post, i, text, form)
            deadline = time.perf_counter() + 30
            while time.perf_counter() < deadline and len([t for t in sent if t in arrived]) < total:
                time.sleep(0.05)
            lat = [(arrived[t] - sent[t]) * 1000 for t in sent if t in arrived]
            return [
                name,
                total,
                f"{rate:g}/s",
                sum(1 for s in statuses if s == 204),
                len(lat),
                f"{percentile(lat, 50):.1f}",
                f"{percentile(lat, 99):.1f}",
                f"{max(lat):.1f}" if lat else "-",
            ]
        finally:
            for w in workers:
                w.terminate()
                w.wait(10)
            if server:
                server.stop()
            fake.stop()
            database.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setups", default="gunicorn-sqlite,gunicorn-postgres,workers-postgres")
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--chats", type=int, default=100)
    a = p.parse_args()
    rows = [run_setup(s, a.rate, a.seconds, a.chats) for s in a.setups.split(",")]
    print(f"machine: {machine()}")
    print(
        f"load: {a.rate:g} webhooks/s for {a.seconds:g} s, each relayed (signed sha256), {a.chats} chats; "
        "gunicorn -w 1 --threads 100 --no-control-socket; fake Vonage over TLS in the bench process"
    )
    print(table(["setup", "webhooks", "rate", "204s", "relays arrived", "p50 ms", "p99 ms", "max ms"], rows))


if __name__ == "__main__":
    main()
