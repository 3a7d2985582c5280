"""Throughput, end to end: signed inbound webhooks in, relays out through the real SDK to the fake Vonage (a
process of its own, answering at once), every text counted at the fake: relayed exactly once, or not.

    python -m bench.throughput                                   # ingest, 100 chats, as fast as it goes
    python -m bench.throughput --chats 1                         # ingest, one chat (the Node app's workload)
    python -m bench.throughput --rate 1000 --seconds 60          # sustained: 1,000 texts/s offered for 60 s
    python -m bench.throughput --setups main-sqlite,main-postgres,gunicorn-sqlite --runs 3

Closed loop (no --rate): wrk, 32 keep-alive connections, each webhook with a unique messageId and text. Open
loop (--rate R): an asyncio client in this process offers R webhooks/s on 32 connections whatever the server
does, and stamps each send, so the relay latency (webhook sent -> relay at the fake) is measured too.

Per run: webhooks acknowledged per second and their latency; relays that reached the fake during the load
and their rate per second (median and worst 1 s); every acknowledged text relayed exactly once (after the
backlog drained, at most --drain seconds); CPU of all the app's processes (arbiter, web, outbox) per relayed
text, from the start of the load until the last relay arrived, and the split by process.
Setups: `main-*` = `python -m webapp` (the default: gunicorn's threaded worker + the outbox process);
`onecore-sqlite` = the same with OUTBOX_PROCESS=false; `gunicorn-*` = the documented gunicorn command (outbox
in the web process).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import time
from collections import Counter

from .common import (
    FakeVonageProcess,
    Server,
    app_env,
    cpu_by_pid,
    inbound_body,
    machine,
    open_database,
    percentile,
    seed_chats,
    table,
    workdir,
)
from .load import run_load

# name: (server kind, database, extra settings)
SETUPS = {
    "main-sqlite": ("main", "sqlite", {}),
    "main-postgres": ("main", "postgres", {}),
    "onecore-sqlite": ("main", "sqlite", {"OUTBOX_PROCESS": "false"}),
    "gunicorn-sqlite": ("gunicorn", "sqlite", {}),
    "gunicorn-postgres": ("gunicorn", "postgres", {}),
}


async def open_loop(url: str, bodies: list[tuple[str, str]], rate: float, connections: int) -> tuple[
        dict[str, float], list[float], int]:
    """Offer `bodies` at `rate` per second over `connections` keep-alive connections; returns the send time of
    each text (time.time()), the latency of each answer (ms), and how many were not 2xx."""
    host, port = url.split("//")[1].split(":")
    queue: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()
    sent: dict[str, float] = {}
    latencies: list[float] = []
    bad = 0

    async def worker() -> None:
        nonlocal bad
        reader, writer = await asyncio.open_connection(host, int(port))
        while (item := await queue.get()) is not None:
            text, body = item
            data = body.encode()
            head = (f"POST /webhooks/inbound-sms HTTP/1.1\r\nHost: {host}\r\nContent-Type: "
                    f"application/x-www-form-urlencoded\r\nContent-Length: {len(data)}\r\n\r\n").encode()
            t0 = time.perf_counter()
            sent[text] = time.time()
            writer.write(head + data)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if length:
                await reader.readexactly(length)
            latencies.append((time.perf_counter() - t0) * 1000)
            if not status.split()[1].startswith(b"2"):
                bad += 1
        writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    start = time.perf_counter()
    for i, item in enumerate(bodies):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait(item)
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return sent, latencies, bad


def run_setup(name: str, a: argparse.Namespace) -> list:
    kind, db_kind, extra = SETUPS[name]
    with workdir("bench-throughput-") as wd:
        database = open_database(db_kind, wd)
        fake = FakeVonageProcess(wd)
        server = None
        try:
            keys = seed_chats(database.url, a.chats)
            env = app_env(database.url, OUTBOX_WORKER="true", LOG_LEVEL=a.log_level,
                          VONAGE_MAX_SENDS_PER_SECOND="100000", **fake.env(), **extra)
            server = Server(kind, env, wd, threads=100)
            rng = random.Random(4)
            tag = f"T{time.time_ns() % 10**9}-"
            n = int(a.rate * a.seconds) if a.rate else int(a.seconds * 6000) + 1000
            bodies = []
            for i in range(n):
                sender, proxy = rng.choice(keys)
                text = f"{tag}{i}"
                bodies.append((text, inbound_body(sender, proxy, text, f"{tag}{i}")))
            warm = wd / "warm.txt"
            warm.write_text("".join(inbound_body(*rng.choice(keys), f"warm {i}", f"W{tag}{i}") + "\n"
                                    for i in range(300)))
            run_load(server.url, warm, 8, 1.0)
            wait_for_relays(fake, lambda t: t.startswith("warm "), 300, 30)
            pids = server.pids()
            names = {pid: n for n, pid in server.named().items()} | {server.popen.pid: "arbiter"}
            cpu0, t0 = cpu_by_pid(pids), time.time()
            if a.rate:
                sent, lat, bad = asyncio.run(open_loop(server.url, bodies, a.rate, a.connections))
                acked = len(lat) - bad
                p50, p99, loaded = percentile(lat, 50), percentile(lat, 99), time.time() - t0
            else:
                path = wd / "bodies.txt"
                path.write_text("".join(body + "\n" for _, body in bodies))
                result = run_load(server.url, path, a.connections, a.seconds)
                acked, bad, p50, p99, loaded = (result.requests - result.non_2xx, result.non_2xx, result.p50_ms,
                                                result.p99_ms, result.seconds)
                sent = {}
            t_load_end = time.time()
            arrivals = wait_for_relays(fake, lambda t: t.startswith(tag), acked, a.drain)
            cpu1 = cpu_by_pid(pids)
            got = Counter(r["text"] for r in arrivals)
            relayed = len(got)
            doubled = sum(1 for c in got.values() if c > 1)
            times = sorted(r["time"] for r in arrivals)
            last = times[-1] if times else t_load_end
            during = [t for t in times if t <= t_load_end]
            buckets = Counter(int(t - t0) for t in during)
            per_second = [buckets.get(s, 0) for s in range(1, max(int(t_load_end - t0), 2))]  # skip ramp-up
            e2e = [(r["time"] - sent[r["text"]]) * 1000 for r in arrivals if r["text"] in sent]
            cpu = {names.get(pid, str(pid)): cpu1.get(pid, 0) - cpu0.get(pid, 0) for pid in cpu1}
            total_cpu = sum(cpu.values())
            split = ", ".join(f"{k.replace('smsproxy-', '')} {v * 1000 / max(relayed, 1):.2f}"
                              for k, v in sorted(cpu.items()))
            return [
                name, a.chats, f"{a.rate:g}/s" if a.rate else f"wrk c{a.connections}",
                f"{acked / loaded:,.0f}", f"{p50:.1f}", f"{p99:.1f}", bad,
                f"{len(during) / loaded:,.0f}",
                f"{statistics.median(per_second) if per_second else 0:,.0f} / {min(per_second, default=0):,}",
                f"{relayed}/{acked}", doubled, f"{last - t_load_end:.1f}",
                f"{percentile(e2e, 50):.0f} / {percentile(e2e, 99):.0f}" if e2e else "-",
                f"{total_cpu * 1000 / max(relayed, 1):.2f}", split,
            ]
        finally:
            if server:
                server.stop()
            fake.stop()
            database.close()
            shutil.rmtree(wd / "certs", ignore_errors=True)


def wait_for_relays(fake: FakeVonageProcess, wanted, n: int, timeout: float) -> list[dict]:
    """The fake's accepted sends matching `wanted(text)`, once n distinct texts arrived (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        got = [r for r in fake.accepted() if wanted(r.get("text") or "")]
        if len({r["text"] for r in got}) >= n or time.monotonic() > deadline:
            time.sleep(0.5)  # a late duplicate would show here
            return [r for r in fake.accepted() if wanted(r.get("text") or "")]
        time.sleep(0.2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setups", default="main-sqlite")
    p.add_argument("--chats", type=int, default=100)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=0.0, help="offered webhooks/s (open loop); 0 = wrk, closed loop")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--drain", type=float, default=120.0, help="seconds to wait for the backlog after the load")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--log-level", default="INFO")
    a = p.parse_args()
    rows = [run_setup(s, a) for s in a.setups.split(",") for _ in range(a.runs)]
    print(f"machine: {machine()}")
    print(f"load: POST /webhooks/inbound-sms signed sha256, unique messageIds, {a.chats} chats, "
          f"{'open loop ' + format(a.rate, 'g') + '/s' if a.rate else 'wrk closed loop'} for {a.seconds:g} s, "
          f"{a.connections} connections; LOG_LEVEL={a.log_level}; fake Vonage (TLS, real SDK) answering at once in "
          "its own process; VONAGE_MAX_SENDS_PER_SECOND lifted")
    print(table(["setup", "chats", "load", "webhooks/s", "p50 ms", "p99 ms", "non-2xx", "relays/s during load",
                 "relays/s median / worst 1 s", "relayed once/acked", "doubled", "drain after load s",
                 "relay latency p50 / p99 ms", "app CPU ms/text", "CPU ms/text by process"], rows))


if __name__ == "__main__":
    main()
