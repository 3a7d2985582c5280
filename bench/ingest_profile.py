"""Where the CPU of one webhook goes, in-process, one thread (no HTTP server, no contention). Prints CPU
microseconds per webhook for each layer:

    python -m bench.ingest_profile [--database sqlite|postgres] [--n 2000] [--events]

- `full request`: Flask test client -> /webhooks/inbound-sms (routing, form parsing, service, commit, live).
- `receive_sms()`: the service alone (parse numbers, then the lean path of services/relay.py: four prebuilt
  Core statements, INSERT ... ON CONFLICT DO NOTHING RETURNING as the dedupe, one commit). Before that path
  existed the ORM unit of work cost 2,315 µs (SQLite) / 3,385 µs (PostgreSQL) here (BENCHMARKS.md).
- `parse_inbound()`: number parsing and validation alone (phonenumbers).
With `--events`, EVENTS_URL is set, so each webhook also records its `message.received` event (callbacks/record.py;
no sender runs here): the difference to a run without it is what recording an event costs the hot path.
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from pathlib import Path

from .common import app_for, inbound_form, machine, open_database, seed_chats, table, workdir


def measure(fn, forms) -> float:
    c0 = time.process_time()
    for f in forms:
        fn(f)
    return (time.process_time() - c0) / len(forms) * 1e6


def run(kind: str, n: int, events: bool = False) -> list[list]:
    from webapp import services
    from webapp.extensions import db
    from webapp.services.inbound import parse_inbound

    logging.disable(logging.INFO)
    with workdir("bench-prof-") as wd:
        database = open_database(kind, Path(wd))
        try:
            keys = seed_chats(database.url, 100)
            extra = {"EVENTS_URL": "http://127.0.0.1:9/events", "EVENTS_SECRET": "bench"} if events else {}
            app = app_for(database.url, TESTING=False, **extra)
            client = app.test_client()
            rng = random.Random(3)

            def forms(tag: str) -> list[dict]:
                return [
                    inbound_form(*rng.choice(keys), f"profile {i}", f"{tag}{time.time_ns()}-{i}", signed=False)
                    for i in range(n)
                ]

            warm = forms("W")
            for f in warm[: n // 5]:
                client.post("/webhooks/inbound-sms", data=f)
            rows = []
            full = measure(lambda f: client.post("/webhooks/inbound-sms", data=f), forms("F"))
            with app.app_context():
                service = measure(services.receive_sms, forms("S"))
                parse = measure(parse_inbound, forms("P"))
                db.session.remove()
                db.engine.dispose()
            rows.append([kind, "full request (test client)", f"{full:.0f}"])
            rows.append([kind, "receive_sms() (lean path: services/relay.py)", f"{service:.0f}"])
            rows.append([kind, "  of which parse_inbound()", f"{parse:.0f}"])
            from vonage import Auth

            from .common import SIG_METHOD, SIG_SECRET

            auth = Auth(api_key="benchkey", signature_secret=SIG_SECRET, signature_method=SIG_METHOD)
            signed = [inbound_form(*rng.choice(keys), f"sig {i}", f"G{i}") for i in range(n)]
            assert auth.check_signature(dict(signed[0]))
            sig = measure(lambda f: auth.check_signature(dict(f)), signed)
            rows.append([kind, "signature check (vonage Auth.check_signature, sha256)", f"{sig:.0f}"])
            return rows
        finally:
            database.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--databases", default="sqlite,postgres")
    p.add_argument("--n", type=int, default=1500)
    p.add_argument("--events", action="store_true", help="set EVENTS_URL: each webhook records an event too")
    a = p.parse_args()
    rows = [r for k in a.databases.split(",") for r in run(k, a.n, a.events)]
    print(f"machine: {machine()}")
    print(f"{a.n} webhooks per row, one thread, in-process, relayed to an active chat, unsigned, logging off"
          + (", EVENTS_URL set (each records message.received)" if a.events else ""))
    print(table(["database", "layer", "CPU µs per webhook"], rows))


if __name__ == "__main__":
    main()
