"""Benchmark: event callbacks. (1) Event delivery latency: from posting an inbound webhook to its
`message.received` event reaching a local receiver. (2) Relay latency (webhook -> the relayed SMS at a local
fake Vonage over TLS) while the receiver answers at once, answers 500 to everything, or sleeps 10 s on every
request (the app gives up after EVENTS_TIMEOUT_SECONDS=5), against no EVENTS_URL at all.

    python -m bench.events [--databases sqlite,postgres] [--rate 20] [--seconds 10] [--chats 50] [--rounds 1]

Each scenario starts its own gunicorn (`-w 1 --threads 100`, outbox worker and event sender in-process), fake
Vonage (posting delivery receipts back, so each text also causes a `message.delivered` event) and receiver
(tests/fakes/receiver.py), offers `rate` signed webhooks per second for `seconds`, and stops what it started.
`--rounds 3` runs every scenario three times, interleaved, so a busy machine shows as spread, not as a trend.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

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

SECRET = "bench-events-secret"
SCENARIOS = {
    "no EVENTS_URL": None,
    "receiver answers 200": (200, 0.0),
    "receiver answers 500": (500, 0.0),
    "receiver sleeps 10 s": (200, 10.0),
}


def ms(values: list[float], p: float) -> str:
    return f"{percentile(values, p) * 1000:.0f}" if values else "-"


def run(db_kind: str, scenario: str, rate: float, seconds: float, chats: int) -> list[Any]:
    from tests.fakes.receiver import Receiver

    behaviour = SCENARIOS[scenario]
    with workdir("bench-events-") as wd, Receiver(secret=SECRET) as rx:
        database = open_database(db_kind, wd)
        fake = start_fake_vonage(wd / "certs")
        arrived: dict[str, float] = {}
        lock = threading.Lock()
        original = fake._accept

        def stamp(params, ids, partial):
            with lock:
                arrived.setdefault(params.get("text", ""), time.time())
            original(params, ids, partial)

        fake._accept = stamp
        server = None
        try:
            keys = seed_chats(database.url, chats)
            extra: dict[str, Any] = {}
            if behaviour is not None:
                rx.default, rx.default_sleep = behaviour
                extra = {"EVENTS_URL": rx.url, "EVENTS_SECRET": SECRET}
            env = app_env(
                database.url, SMS_GATEWAY="vonage", VONAGE_API_KEY="key", VONAGE_API_SECRET="secret",
                VONAGE_REST_HOST=fake.host, VONAGE_API_HOST=fake.host, REQUESTS_CA_BUNDLE=str(fake.ca_path),
                VONAGE_MAX_SENDS_PER_SECOND=str(rate * 5), OUTBOX_WORKER="true", LOG_LEVEL="WARNING", **extra,
            )
            server = Server("gunicorn", env, wd)
            fake.dlr_url = server.url + "/webhooks/delivery-receipt"
            sent: dict[str, float] = {}
            rng = random.Random(5)
            forms = []
            for i in range(int(rate * seconds)):
                sender, proxy = rng.choice(keys)
                text = f"event-bench-{i}-{rng.random():.6f}"
                forms.append((text, inbound_form(sender, proxy, text, f"E{time.time_ns()}-{i}")))
            local = threading.local()
            statuses: list[int] = []

            def post(text: str, form: dict) -> None:
                session = getattr(local, "s", None) or requests.Session()
                local.s = session
                sent[text] = time.time()
                statuses.append(session.post(server.url + "/webhooks/inbound-sms", data=form, timeout=30).status_code)

            with ThreadPoolExecutor(16) as pool:
                t0 = time.perf_counter()
                for i, (text, form) in enumerate(forms):
                    delay = t0 + i / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    pool.submit(post, text, form)
            deadline = time.time() + 30
            while time.time() < deadline and len([t for t in sent if t in arrived]) < len(sent):
                time.sleep(0.05)
            relay = [arrived[t] - sent[t] for t in sent if t in arrived]
            event_lat: list[float] = []
            if behaviour == (200, 0.0):
                deadline = time.time() + 30
                while time.time() < deadline:
                    received = {h.event["data"].get("text"): h.at for h in list(rx.hits)
                                if h.event.get("type") == "message.received"}
                    if len(received) >= len(sent):
                        break
                    time.sleep(0.1)
                event_lat = [received[t] - sent[t] for t in sent if t in received]
            return [
                db_kind, scenario, len(sent), sum(1 for s in statuses if s == 204), len(relay),
                ms(relay, 50), ms(relay, 95), ms(relay, 99), ms(relay, 100), len(rx.hits),
                len(event_lat) if event_lat else "-", ms(event_lat, 50), ms(event_lat, 95), ms(event_lat, 99),
            ]
        finally:
            if server:
                server.stop()
            fake.stop()
            database.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--databases", default="sqlite,postgres")
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--chats", type=int, default=50)
    p.add_argument("--rounds", type=int, default=1)
    a = p.parse_args()
    rows = [run(d, s, a.rate, a.seconds, a.chats)
            for d in a.databases.split(",") for _ in range(a.rounds) for s in a.scenarios.split(",")]
    print(f"machine: {machine()}")
    print(f"load: {a.rate:g} signed webhooks/s for {a.seconds:g} s over {a.chats} chats, each relayed; "
          "gunicorn -w 1 --threads 100; fake Vonage (TLS) and receiver in the bench process; "
          "EVENTS_TIMEOUT_SECONDS=5, EVENTS_CONCURRENCY=4")
    print(table(["db", "receiver", "webhooks", "204s", "relays", "relay p50 ms", "p95", "p99", "max",
                 "event POSTs", "events timed", "event p50 ms", "p95", "p99"], rows))


if __name__ == "__main__":
    main()
