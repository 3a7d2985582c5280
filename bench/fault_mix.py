"""Fault mix: relay N texts through the real SDK to the fake Vonage while it misbehaves; count the outcome.

    .venv/bin/python -m bench.fault_mix [--n 2000] [--seed 1] [--no-dlr] [--concurrency 8]

The fake answers 10% of requests with status 1 (throttled), 5% with HTTP 500, 2% with HTTP 429 and drops 1%
of connections before taking the message (the issue's mix). 5% of the inbound webhooks are also delivered
twice, as Vonage does when it missed an acknowledgement. Each relay is counted on the fake's side ("what a
phone would receive"): delivered exactly once, duplicated, or lost; and whether each recipient got its
texts in order. For comparison it also sends the same N texts the tutorial's way (one `client.sms.send()`
per text, SDK defaults, no retry).

tests/delivery/test_fault_mix.py runs `run()` and asserts zero lost, zero duplicated, nothing out of order.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.fakes.vonage import FakeVonage, Faults

MIX = Faults(throttle=0.10, http500=0.05, http429=0.02, drop=0.01)
PROXIES = ["+447700900001", "+447700900002", "+447700900003"]


def _numbers(i: int) -> tuple[str, str]:
    # UK fictional range; the last four digits (i + 1000) avoid the fake's magic suffixes (0001, 0429, ...)
    return f"+4477005{1000 + i:04d}", f"+4477006{1000 + i:04d}"


@contextlib.contextmanager
def _environment(ca_path: Path, quiet: bool) -> Iterator[None]:
    """REQUESTS_CA_BUNDLE for the fake, and quiet loggers; both restored afterwards."""
    import logging

    names = ("webapp", "werkzeug", "vonage", "vonage_http_client")
    levels = {name: logging.getLogger(name).level for name in names}
    old_ca = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = str(ca_path)
    if quiet:
        for name in names:
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if old_ca is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = old_ca


def run(n: int = 2000, seed: int = 1, workdir: Path | None = None, dlr: bool = True, concurrency: int = 8,
        chats: int = 100, duplicate_webhooks: float = 0.05, quiet: bool = True) -> dict[str, Any]:
    """Relay `n` texts under the fault mix; return the counts."""
    import random

    workdir = Path(workdir or tempfile.mkdtemp(prefix="fault-mix-"))
    rng = random.Random(seed)
    fake = FakeVonage(workdir / "certs", seed=seed).start()
    with _environment(fake.ca_path, quiet):
        return _run(fake, n, rng, workdir, dlr, concurrency, chats, duplicate_webhooks)


def _run(fake: FakeVonage, n: int, rng: Any, workdir: Path, dlr: bool, concurrency: int, chats: int,
         duplicate_webhooks: float) -> dict[str, Any]:
    from sqlalchemy import and_, or_
    from werkzeug.serving import make_server

    from webapp import create_app, outbox, prepare_database
    from webapp.extensions import db
    from webapp.jobs import run_once
    from webapp.models import Message
    from webapp.services.chats import start_chat, validate_chat_request

    app = create_app({
        "TESTING": True, "SECRET_KEY": "bench",
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{workdir / 'bench.db'}",
        "PROXY_NUMBERS": ",".join(PROXIES), "SMS_GATEWAY": "vonage", "VONAGE_API_KEY": "key",
        "VONAGE_API_SECRET": "secret", "VONAGE_REST_HOST": fake.host, "VONAGE_TIMEOUT": 5,
        "VONAGE_MAX_SENDS_PER_SECOND": 2000.0, "OUTBOX_CONCURRENCY": concurrency,
        "OUTBOX_RETRY_BASE_SECONDS": 0.05, "OUTBOX_RETRY_CAP_SECONDS": 0.5, "OUTBOX_MAX_ATTEMPTS": 12,
        "OUTBOX_RECONCILE_SECONDS": 1.0, "AUTO_REPLY": False,
    })
    prepare_database(app)
    server = None
    if dlr:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    client = app.test_client()
    started = time.monotonic()
    try:
        with app.app_context():
            pairs = []
            for i in range(chats):
                a, b = _numbers(i)
                chat = start_chat(validate_chat_request(a, b))
                pairs.append((a, b, chat.proxy_number))
            while outbox.drain_once():
                pass
            fake.clear()
            fake.faults = MIX
            t_setup = time.monotonic()
            if server:
                fake.dlr_url = f"http://127.0.0.1:{server.server_port}/webhooks/delivery-receipt"
                fake.dlr_retries = 5
            expected: dict[str, list[str]] = defaultdict(list)  # recipient -> texts in arrival order
            webhooks = 0
            for i in range(n):
                a, b, proxy = pairs[i % chats]
                sender, recipient = (a, b) if rng.random() < 0.5 else (b, a)
                text = f"relay {i}"
                params = {"msisdn": sender.lstrip("+"), "to": proxy.lstrip("+"), "text": text,
                          "messageId": f"IN{i:08d}"}
                copies = 2 if rng.random() < duplicate_webhooks else 1
                for _ in range(copies):
                    resp = client.post("/webhooks/inbound-sms", data=params)
                    assert resp.status_code == 204, resp.get_data()
                    webhooks += 1
                expected[recipient.lstrip("+")].append(text)
            t_posted = time.monotonic()
            sends = 0
            for _ in range(10_000):
                run_once(app)  # housekeeping: reconcile unconfirmed sends, recover interrupted ones
                sends += outbox.drain_once()
                pending = db.session.query(Message).filter(
                    Message.direction == "out",
                    or_(Message.status.in_(("queued", "sending")),
                        and_(Message.status == "unconfirmed", Message.next_attempt_at.is_not(None))),
                ).count()
                db.session.rollback()
                if not pending:
                    break
                time.sleep(0.05)
            failed = db.session.query(Message).filter(Message.status == "failed").count()
    finally:
        if server:
            server.shutdown()
        fake.stop()
    elapsed = time.monotonic() - started
    got = Counter(a["text"] for a in fake.accepted)
    all_texts = [t for texts in expected.values() for t in texts]
    out_of_order = sum(
        1 for to, texts in expected.items() if [a["text"] for a in fake.accepted if a["to"] == to] != texts
    )
    outcomes = Counter(r["outcome"] for r in fake.requests)
    return {
        "relays": n,
        "webhooks_posted": webhooks,
        "delivered_once": sum(1 for t in all_texts if got[t] == 1),
        "duplicated": sum(1 for t in all_texts if got[t] > 1),
        "lost": sum(1 for t in all_texts if got[t] == 0),
        "recipients_out_of_order": out_of_order,
        "failed_in_app": failed,
        "requests_to_fake": len(fake.requests),
        "fake_outcomes": dict(outcomes),
        "dlrs_posted": len(fake.dlrs) if dlr else 0,
        "seconds": round(elapsed, 1),
        "seconds_setup_post_drain": [round(t_setup - started, 1), round(t_posted - t_setup, 1),
                                     round(started + elapsed - t_posted, 1)],
    }


def run_tutorial(n: int = 2000, seed: int = 1, workdir: Path | None = None) -> dict[str, Any]:
    """The tutorial's way: one `client.sms.send()` per text with the SDK's defaults, and no retry."""
    from vonage import Auth, HttpClientOptions, Vonage
    from vonage_sms import SmsMessage

    workdir = Path(workdir or tempfile.mkdtemp(prefix="fault-mix-tutorial-"))
    fake = FakeVonage(workdir / "certs", seed=seed, faults=MIX).start()
    options = HttpClientOptions(rest_host=fake.host, timeout=5)
    client = Vonage(Auth(api_key="key", api_secret="secret"), options)
    errors = 0
    try:
        with _environment(fake.ca_path, quiet=True):
            for i in range(n):
                try:
                    client.sms.send(SmsMessage(to="447700500123", from_="447700900001", text=f"relay {i}"))
                except Exception:
                    errors += 1
    finally:
        fake.stop()
    got = Counter(a["text"] for a in fake.accepted)
    return {
        "relays": n,
        "delivered_once": sum(1 for i in range(n) if got[f"relay {i}"] == 1),
        "duplicated": sum(1 for i in range(n) if got[f"relay {i}"] > 1),
        "lost": sum(1 for i in range(n) if got[f"relay {i}"] == 0),
        "errors_seen_by_sender": errors,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--no-dlr", action="store_true")
    p.add_argument("--skip-tutorial", action="store_true")
    a = p.parse_args()
    print("app:     ", json.dumps(run(a.n, a.seed, dlr=not a.no_dlr, concurrency=a.concurrency)))
    if not a.skip_tutorial:
        print("tutorial:", json.dumps(run_tutorial(a.n, a.seed)))


if __name__ == "__main__":
    main()
