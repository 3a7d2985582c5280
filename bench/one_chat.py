"""One chat, two people: a burst of texts through the real server (`python -m webapp`) while the fake Vonage
misbehaves. A real chat is two people, so every text waits in one of two lanes: this is where a stalled lane
shows.

    .venv/bin/python -m bench.one_chat [--n 300] [--mix | --no-faults] [--upstream-ms 0] [--db sqlite|postgres]
                                       [--concurrency 8] [--rate 1000] [--seed 1]

The fault mix: 10% throttled (status 1), 5% HTTP 500, 2% HTTP 429, 1% dropped connections before Vonage took the
text. The fake posts delivery receipts (with our client-ref) to the server and retries them, as Vonage does.
For every text it measures the time from the webhook's 204 to the fake accepting its relay, and splits texts
into those whose own send was faulted (any request for it failed) and the others. Prints delivered exactly
once / duplicated / lost, latency percentiles, the drain rate (relays/s from the first 204 to the last relay)
and the app's CPU per relay (all its processes).

tests/delivery/test_one_chat.py runs `run()` on SQLite and PostgreSQL and asserts the issue's bounds.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from bench.common import (
    API_TOKEN,
    ROOT,
    SIG_METHOD,
    SIG_SECRET,
    Server,
    app_env,
    cpu_by_pid,
    cpu_delta,
    open_database,
    percentile,
    sign,
    workdir,
)

A, B = "+447700611234", "+447700622345"  # no magic endings of the fake (0001, 0429, ...)
PROXY = "+447700900001"
MIX = {"throttle": 0.10, "http500": 0.05, "http429": 0.02, "drop": 0.01}


def run(n: int = 300, faults: dict[str, float] | None = None, upstream_ms: float = 0.0, db: str = "sqlite",
        concurrency: int = 8, rate: float = 1000.0, seed: int = 1, settle_timeout: float = 90.0,
        env: dict[str, Any] | None = None, work: Path | None = None) -> dict[str, Any]:
    """Relay `n` texts in one chat through a real server; return the figures (see the module docstring)."""
    import sys

    sys.path.insert(0, str(ROOT))
    from tests.fakes.vonage import FakeVonage, Faults

    with workdir("one-chat-") as tmp:
        base = Path(work or tmp)
        database = open_database(db, base)
        fake = FakeVonage(base / "certs", seed=seed).start()
        server = None
        try:
            server = Server("main", app_env(
                database.url,
                PROXY_NUMBERS=PROXY,
                OUTBOX_WORKER="true",
                SMS_GATEWAY="vonage",
                VONAGE_API_KEY="key",
                VONAGE_API_SECRET="secret",
                VONAGE_REST_HOST=fake.host,
                VONAGE_TIMEOUT=5,
                VONAGE_MAX_SENDS_PER_SECOND=rate,
                REQUESTS_CA_BUNDLE=str(fake.ca_path),
                **{"AUTO_REPLY": "false", "LOG_LEVEL": "WARNING", **(env or {})},
            ), base)
            fake.dlr_url = server.url + "/webhooks/delivery-receipt"
            fake.dlr_retries, fake.dlr_retry_interval = 40, 0.25
            fake.signature_secret, fake.signature_method = SIG_SECRET, SIG_METHOD  # receipts signed, as Vonage
            auth = {"Authorization": f"Bearer {API_TOKEN}"}
            resp = requests.post(server.url + "/api/chats", json={"a": A, "b": B}, headers=auth, timeout=10)
            resp.raise_for_status()
            if not fake.wait_for(2, timeout=30):
                raise RuntimeError("the introductions were not sent")
            time.sleep(0.5)
            fake.clear()
            fake.faults = Faults(**(faults or {}), slow=1.0 if upstream_ms else 0.0,
                                 slow_seconds=upstream_ms / 1000)
            return _burst(server, fake, n, concurrency, settle_timeout)
        finally:
            if server is not None:
                server.stop()
            fake.stop()
            database.close()


def _burst(server: Server, fake: Any, n: int, concurrency: int, settle_timeout: float) -> dict[str, Any]:
    texts = [f"text {i:05d}" for i in range(n)]
    acked: dict[str, float] = {}
    lock = threading.Lock()
    session_local = threading.local()

    def post(i: int) -> None:
        s = getattr(session_local, "s", None) or requests.Session()
        session_local.s = s
        sender = A if i % 2 == 0 else B
        params = {"msisdn": sender.lstrip("+"), "to": PROXY.lstrip("+"), "text": texts[i],
                  "messageId": f"ONE{i:08d}", "type": "text", "message-timestamp": "2026-11-29 12:00:00",
                  "api-key": "key", "timestamp": str(int(time.time()))}
        params["sig"] = sign(params)
        for _ in range(50):  # as Vonage: anything but 2xx is delivered again
            r = s.post(server.url + "/webhooks/inbound-sms", data=params, timeout=30)
            if r.status_code in (200, 204):
                with lock:
                    acked[texts[i]] = time.time()
                return
            time.sleep(0.2)
        raise RuntimeError(f"webhook {i} never acknowledged: {r.status_code}")

    pids = server.pids()
    cpu_before = cpu_by_pid(pids)
    started = time.time()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(post, range(n)))
    last_ack = max(acked.values())
    deadline = last_ack + settle_timeout
    while time.time() < deadline:
        got = {a["text"] for a in fake.accepted}
        if all(t in got for t in texts):
            break
        time.sleep(0.1)
    time.sleep(1.0)  # anything sent twice would show up now
    cpu = cpu_delta(cpu_before, cpu_by_pid(server.pids()))

    first_accept: dict[str, float] = {}
    count: Counter[str] = Counter()
    for a in fake.accepted:
        count[a["text"]] += 1
        first_accept.setdefault(a["text"], a["time"])
    faulted = {r["params"].get("text") for r in fake.requests if r["outcome"] not in ("ok", "partial")}
    latency_clean = [first_accept[t] - acked[t] for t in texts if t in first_accept and t not in faulted]
    latency_all = [first_accept[t] - acked[t] for t in texts if t in first_accept]
    done_at = max(first_accept.values(), default=last_ack)
    outcomes = Counter(r["outcome"] for r in fake.requests)
    return {
        "texts": n,
        "delivered_once": sum(1 for t in texts if count[t] == 1),
        "duplicated": sum(1 for t in texts if count[t] > 1),
        "lost": sum(1 for t in texts if count[t] == 0),
        "faulted_texts": len(faulted & set(texts)),
        "fake_outcomes": dict(outcomes),
        "latency_clean_p50_s": round(percentile(latency_clean, 50), 3),
        "latency_clean_p95_s": round(percentile(latency_clean, 95), 3),
        "latency_clean_max_s": round(max(latency_clean, default=float("nan")), 3),
        "latency_all_p95_s": round(percentile(latency_all, 95), 3),
        "latency_all_max_s": round(max(latency_all, default=float("nan")), 3),
        "last_relay_after_last_ack_s": round(done_at - last_ack, 2),
        "ingest_per_s": round(n / max(last_ack - started, 1e-6), 1),
        "drain_relays_per_s": round(n / max(done_at - started, 1e-6), 1),
        "app_cpu_ms_per_relay": round(cpu * 1000 / n, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--no-faults", action="store_true", help="upstream answers every send (default: the mix)")
    p.add_argument("--upstream-ms", type=float, default=0.0)
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--rate", type=float, default=1000.0, help="VONAGE_MAX_SENDS_PER_SECOND")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    result = run(a.n, None if a.no_faults else MIX, a.upstream_ms, a.db, a.concurrency, a.rate, a.seed)
    config = {"n": a.n, "faults": "none" if a.no_faults else MIX, "upstream_ms": a.upstream_ms, "db": a.db,
              "concurrency": a.concurrency, "rate": a.rate}
    print(json.dumps({"config": config, **result}, indent=1))


if __name__ == "__main__":
    main()
