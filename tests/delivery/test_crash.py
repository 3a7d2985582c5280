"""Crash safety: the real server, SIGKILLed mid-stream, relays every acknowledged message exactly once.

Webhooks are posted concurrently; the server is killed twice while it receives and sends; what was not
acknowledged is posted again after the restart (as Vonage does for 24 h). The fake posts delivery receipts
with our client-ref and retries them while the server is down (as Vonage does for 72 h), which is how the
restarted outbox learns whether an interrupted send reached Vonage.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter

import pytest
import requests

from tests.fakes.vonage import Faults

N_CHATS = 8
N_MESSAGES = 360


def pending_outbound(db_path) -> int:
    with sqlite3.connect(db_path, timeout=15) as conn:
        return conn.execute(
            "SELECT count(*) FROM messages WHERE direction = 'out' AND "
            "(status IN ('queued', 'sending') OR (status = 'unconfirmed' AND next_attempt_at IS NOT NULL))"
        ).fetchone()[0]


@pytest.mark.slow
def test_sigkill_mid_stream_loses_and_doubles_nothing(fake, server_factory, tmp_path):
    server = server_factory(
        OUTBOX_LEASE_SECONDS=1,
        OUTBOX_RECONCILE_SECONDS=3,
        OUTBOX_RETRY_BASE_SECONDS=0.05,
        OUTBOX_RETRY_CAP_SECONDS=0.3,
        OUTBOX_POLL_SECONDS=0.1,
        OUTBOX_CONCURRENCY=4,
        VONAGE_MAX_SENDS_PER_SECOND=200,
    )
    fake.dlr_url = server.url + "/webhooks/delivery-receipt"
    fake.dlr_retries, fake.dlr_retry_interval = 40, 0.25
    fake.faults = Faults(throttle=0.05, drop_after_accept=0.03, drop=0.02)
    server.start()
    assert "VONAGE_SIGNATURE_SECRET is empty" in (tmp_path / "server.log").read_text()

    headers = {"Authorization": "Bearer crash-token-0123456789abcdef0123456789"}
    chats = []
    for i in range(N_CHATS):
        a, b = f"+4477005{1000 + i:04d}", f"+4477006{1000 + i:04d}"
        resp = requests.post(server.url + "/api/chats", json={"a": a, "b": b}, headers=headers, timeout=10)
        assert resp.status_code == 201, resp.text
        chats.append((a, b, resp.json()["proxy_number"]))

    def webhook(i: int) -> dict[str, str]:
        a, b, proxy = chats[i % N_CHATS]
        sender = a if i % 2 else b
        return {"msisdn": sender.lstrip("+"), "to": proxy.lstrip("+"), "text": f"crash {i}",
                "messageId": f"CRASH{i:06d}", "type": "text"}

    acked: set[int] = set()
    lock = threading.Lock()
    todo = list(range(N_MESSAGES))

    def poster(ids: list[int]) -> None:
        for i in ids:
            try:
                resp = requests.post(server.url + "/webhooks/inbound-sms", data=webhook(i), timeout=10)
            except requests.RequestException:
                continue
            if resp.status_code == 204:
                with lock:
                    acked.add(i)

    def post_all(ids: list[int], threads: int = 8) -> None:
        workers = [threading.Thread(target=poster, args=(ids[k::threads],)) for k in range(threads)]
        for w in workers:
            w.start()
        return workers

    workers = post_all(todo)
    for fraction in (0.3, 0.65):  # kill twice while webhooks arrive and relays go out
        while len(acked) < N_MESSAGES * fraction and any(w.is_alive() for w in workers):
            time.sleep(0.005)
        server.kill()
        time.sleep(0.3)
        server.start()
    for w in workers:
        w.join()

    # Vonage re-sends what it did not see acknowledged
    for _ in range(5):
        missing = [i for i in todo if i not in acked]
        if not missing:
            break
        for w in post_all(missing, threads=4):
            w.join()
    assert len(acked) == N_MESSAGES

    deadline = time.monotonic() + 90
    wanted = {f"crash {i}" for i in acked}
    while time.monotonic() < deadline:
        got = {a["text"] for a in fake.accepted}
        if wanted <= got and pending_outbound(tmp_path / "server.db") == 0:
            break
        time.sleep(0.2)
    time.sleep(1.0)  # a late duplicate would show here
    counts = Counter(a["text"] for a in fake.accepted if a["text"].startswith("crash "))
    lost = sorted(t for t in wanted if counts[t] == 0)
    doubled = sorted(t for t, c in counts.items() if c > 1)
    assert lost == [] and doubled == [], (lost[:10], doubled[:10])
    assert len(counts) == N_MESSAGES
