"""Send rate under a backlog: how much of VONAGE_MAX_SENDS_PER_SECOND the outbox uses, and never more.

    .venv/bin/python -m bench.send_rate [--n 300] [--rate 30] [--latency 0.15] [--concurrency 8]

Queues N relays to N different recipients, then drains them through the real SDK to the fake Vonage, which
answers every request after `latency` seconds (a realistic round trip). Prints the achieved sends per
second and the most requests the fake received in any 1 s window.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.fakes.vonage import FakeVonage, Faults

from .fault_mix import PROXIES, _environment


def run(n: int = 300, rate: float = 30.0, latency: float = 0.15, concurrency: int = 8) -> dict[str, Any]:
    from webapp import create_app, outbox, prepare_database
    from webapp.extensions import db
    from webapp.models import Chat, Message, utcnow

    workdir = Path(tempfile.mkdtemp(prefix="send-rate-"))
    fake = FakeVonage(workdir / "certs", faults=Faults(slow=1.0, slow_seconds=latency)).start()
    try:
        with _environment(fake.ca_path, quiet=True):
            app = create_app({
                "TESTING": True, "SECRET_KEY": "bench",
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{workdir / 'bench.db'}",
                "PROXY_NUMBERS": ",".join(PROXIES), "SMS_GATEWAY": "vonage", "VONAGE_API_KEY": "key",
                "WEBHOOKS_ALLOW_UNSIGNED": True,
                "VONAGE_API_SECRET": "secret", "VONAGE_REST_HOST": fake.host, "VONAGE_TIMEOUT": 5,
                "VONAGE_MAX_SENDS_PER_SECOND": rate, "OUTBOX_CONCURRENCY": concurrency,
            })
            prepare_database(app)
            with app.app_context():
                chat = Chat(a_number="+447700500000", b_number="+447700600000", proxy_number=PROXIES[0])
                db.session.add(chat)
                db.session.flush()
                for i in range(n):
                    db.session.add(Message(direction="out", kind="relay", chat_id=chat.id, side="b",
                                           from_number=PROXIES[0], to_number=f"+4477007{11000 + i:05d}",
                                           text=f"backlog {i}", status="queued", next_attempt_at=utcnow()))
                db.session.commit()
                limiter = outbox.rate_limiter()
                grants: list[float] = []
                inner = limiter.try_acquire

                def recording() -> float:
                    wait = inner()
                    if wait == 0:
                        grants.append(time.time())
                    return wait

                limiter.try_acquire = recording  # type: ignore[method-assign]
                started = time.monotonic()
                while outbox.drain_once():
                    pass
                elapsed = time.monotonic() - started
    finally:
        fake.stop()
    return {"messages": n, "limit_per_s": rate, "latency_s": latency, "concurrency": concurrency,
            "accepted": len(fake.accepted), "seconds": round(elapsed, 2),
            "achieved_per_s": round(len(fake.requests) / elapsed, 1),
            "peak_grants_in_any_1s": peak_in_window(grants),
            "peak_arrivals_in_any_1s_at_fake": peak_in_window([r["time"] for r in fake.requests])}


def peak_in_window(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    peak, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        peak = max(peak, i - j + 1)
    return peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--rate", type=float, default=30.0)
    p.add_argument("--latency", type=float, default=0.15)
    p.add_argument("--concurrency", type=int, default=8)
    a = p.parse_args()
    print(json.dumps(run(a.n, a.rate, a.latency, a.concurrency)))


if __name__ == "__main__":
    main()
