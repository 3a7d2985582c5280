"""Where the CPU of one relayed text goes, stage by stage, in the real server under load.

    python -m bench.stages [--database sqlite|postgres] [--seconds 15] [--chats 100] [--rate 0]

Starts `python -m webapp` (gunicorn's threaded worker + the outbox process) with the fake Vonage in its own
process, drives signed webhooks at it (wrk, or --rate R open loop), and samples both app processes with py-spy
(`pip install py-spy`; 100 samples/s of the thread holding the GIL, i.e. running Python). Each sample is put
in the first stage whose function is on its stack; a stage's share of a process's samples times that process's CPU (from
/proc) per relayed text gives its CPU per text. The table shows each stage's µs per relayed text.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from .common import (
    FakeVonageProcess,
    Server,
    app_env,
    cpu_by_pid,
    inbound_body,
    machine,
    open_database,
    seed_chats,
    table,
    workdir,
)
from .load import run_load
from .throughput import wait_for_relays

# (process, stage, frames that mark it as (function, file path fragment)); the first stage matched wins
STAGES = [
    ("web", "log lines", [("", "logging/__init__.py")]),
    ("web", "live events (Socket.IO emits)", [("announce", "webapp/events.py"), ("_emit", "webapp/live.py")]),
    ("web", "store: group commit (SQL, commit)", [("submit", "webapp/groupcommit.py"), ("try_relay", "relay.py")]),
    ("web", "signature check", [("check_signature", "webapp/webhooks.py")]),
    ("web", "parse: form, numbers", [("webhook_params", "webapp/webhooks.py"), ("parse_inbound", "inbound.py"),
                                     ("parse_concat", "inbound.py")]),
    ("web", "Flask/Werkzeug around the view", [("wsgi_app", "flask/app.py")]),
    ("web", "HTTP: gunicorn parse/respond, threads", [("", "")]),
    ("outbox", "log lines", [("", "logging/__init__.py")]),
    ("outbox", "events to the web process", [("send_event", "webapp/siblings.py"), ("announce", "webapp/events.py")]),
    ("outbox", "claim", [("claim", "webapp/outbox/claim.py")]),
    ("outbox", "settle", [("settle_batch", "webapp/outbox/sender.py")]),
    ("outbox", "send: SDK, requests, TLS", [("send_batch", "webapp/outbox/sender.py")]),
    ("outbox", "housekeeping jobs", [("run_job", "webapp/jobs.py")]),
    ("outbox", "loop, threads, other", [("", "")]),
]


def classify(stack: str, process: str) -> str:
    frames = stack.split(";")
    for proc, stage, marks in STAGES:
        if proc != process:
            continue
        for func, path in marks:
            if any(f.startswith(f"{func} (") if func else True for f in frames if path in f):
                return stage
    return "other"


def record(pid: int, seconds: float, out: Path) -> subprocess.Popen:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "100",
                             "--format", "raw", "--output", str(out), "--nonblocking", "--gil"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def read_raw(path: Path) -> Counter[str]:
    samples: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            samples[stack] += int(count)
    return samples


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database", default="sqlite")
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--chats", type=int, default=100)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--keep", help="a folder to copy the raw py-spy samples into")
    a = p.parse_args()
    with workdir("bench-stages-") as wd:
        database = open_database(a.database, wd)
        fake = FakeVonageProcess(wd)
        server = None
        try:
            keys = seed_chats(database.url, a.chats)
            env = app_env(database.url, OUTBOX_WORKER="true", LOG_LEVEL=a.log_level,
                          VONAGE_MAX_SENDS_PER_SECOND="100000", **fake.env())
            server = Server("main", env, wd)
            rng = random.Random(5)
            tag = f"S{time.time_ns() % 10**9}-"
            n = int(a.seconds * 6000)
            path = wd / "bodies.txt"
            path.write_text("".join(inbound_body(*rng.choice(keys), f"{tag}{i}", f"{tag}{i}") + "\n"
                                    for i in range(n)))
            warm = wd / "warm.txt"
            warm.write_text("".join(inbound_body(*rng.choice(keys), f"warm {i}", f"W{tag}{i}") + "\n"
                                    for i in range(300)))
            run_load(server.url, warm, 8, 1.0)
            named = server.named()
            procs = {"web": named["smsproxy-web"], "outbox": named["smsproxy-outbox"]}
            spies = {name: record(pid, a.seconds, wd / f"{name}.raw") for name, pid in procs.items()}
            cpu0 = cpu_by_pid(list(procs.values()))
            result = run_load(server.url, path, a.connections, a.seconds)
            for spy in spies.values():
                spy.wait(60)
            cpu1 = cpu_by_pid(list(procs.values()))
            if a.keep:  # the raw samples, to look closer (py-spy's raw format: one stack per line)
                for name in procs:
                    shutil.copy(wd / f"{name}.raw", Path(a.keep) / f"{name}.raw")
            acked = result.requests - result.non_2xx
            relayed = len({r["text"] for r in wait_for_relays(fake, lambda t: t.startswith(tag), acked, 60)})
            rows, total = [], 0.0
            for name, pid in procs.items():
                samples = read_raw(wd / f"{name}.raw")
                by_stage: Counter[str] = Counter()
                for stack, count in samples.items():
                    by_stage[classify(stack, name)] += count
                n_samples = sum(by_stage.values()) or 1
                # CPU while sampled: the load window (the drain after it is not in the samples)
                per_text = (cpu1[pid] - cpu0[pid]) * 1e6 / max(acked, 1)
                total += per_text
                for _, stage, _ in (s for s in STAGES if s[0] == name):
                    share = by_stage.get(stage, 0) / n_samples
                    rows.append([name, stage, f"{share * 100:.0f} %", f"{share * per_text:.0f}"])
                rows.append([name, "= process total", "100 %", f"{per_text:.0f}"])
            rows.append(["all", "= app CPU per text during the load", "", f"{total:.0f}"])
        finally:
            if server:
                server.stop()
            fake.stop()
            database.close()
    print(f"machine: {machine()}")
    print(f"load: wrk {a.connections} connections, {a.seconds:g} s, signed webhooks, {a.chats} chats, {a.database}, "
          f"python -m webapp (default), LOG_LEVEL={a.log_level}; {result.rate:,.0f} webhooks/s acknowledged, "
          f"{relayed} of {acked} relayed; py-spy {os.path.basename(shutil.which('py-spy') or 'py-spy')} 100 Hz")
    print(table(["process", "stage", "share of samples", "CPU µs per text"], rows))


if __name__ == "__main__":
    main()
