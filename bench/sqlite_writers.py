"""Two processes writing one SQLite file: the app's writer lock (a Python lock per process, then a file lock
across processes: webapp/database.py) against a Python lock per process with SQLite's busy handler between
the processes (what two processes got before), and SQLite's busy handler alone, which sleeps 1, 2, 5 ... up to
100 ms between tries.

    python -m bench.sqlite_writers [--seconds 5] [--threads 4] [--rows 10]

Each of 2 processes runs `--threads` threads; each thread loops: take the write lock, BEGIN IMMEDIATE, insert
`--rows` rows, COMMIT (WAL, synchronous=NORMAL, as the app). Printed per mode: commits/s over both processes,
and how long a transaction waited for the lock (p50/p99/max), i.e. what a webhook would wait.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sqlite3
import threading
import time
from pathlib import Path

from .common import machine, percentile, table, workdir


def writer_process(path: str, mode: str, seconds: float, threads: int, rows: int, out) -> None:
    from sqlalchemy import create_engine

    from webapp.database import SqliteWriter

    if mode == "file lock":  # the app: a Python lock per process, then the file lock across processes
        gate = SqliteWriter(path)
    elif mode == "process lock":  # the app before: a Python lock per process, SQLite's busy handler across
        gate = SqliteWriter(None)
    else:  # SQLite's busy handler for every writer
        gate = None
    create_engine(f"sqlite:///{path}")  # nothing shared: just the same import cost as the app
    waits: list[float] = []
    commits = 0
    lock = threading.Lock()

    def loop() -> None:
        nonlocal commits
        conn = sqlite3.connect(path, timeout=15, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        deadline = time.monotonic() + seconds
        mine, count = [], 0
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            if gate:
                gate.acquire()
            conn.execute("BEGIN IMMEDIATE")
            mine.append((time.perf_counter() - t0) * 1000)
            conn.executemany("INSERT INTO t (v) VALUES (?)", [("x" * 100,)] * rows)
            conn.execute("COMMIT")
            if gate:
                gate.release()
            count += 1
        with lock:
            waits.extend(mine)
            commits += count

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.send((commits, waits))


def run(mode: str, seconds: float, threads: int, rows: int, wd: Path) -> list:
    path = str(wd / f"{mode.replace(' ', '_')}.db")
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    ctx = multiprocessing.get_context("spawn")
    pipes, procs = [], []
    for _ in range(2):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=writer_process, args=(path, mode, seconds, threads, rows, child))
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    results = [p.recv() for p in pipes]
    for proc in procs:
        proc.join()
    commits = sum(c for c, _ in results)
    waits = [w for _, ws in results for w in ws]
    return [mode, f"{commits / seconds:,.0f}", f"{percentile(waits, 50):.2f}", f"{percentile(waits, 99):.1f}",
            f"{max(waits):.1f}"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--rows", type=int, default=10)
    a = p.parse_args()
    with workdir("bench-sqlite-writers-") as wd:
        rows = [run(mode, a.seconds, a.threads, a.rows, wd) for mode in ("file lock", "process lock", "busy handler")]
    print(f"machine: {machine()}")
    print(f"load: 2 processes x {a.threads} threads, each transaction BEGIN IMMEDIATE + {a.rows} INSERTs + COMMIT, "
          f"{a.seconds:g} s, WAL, synchronous=NORMAL, busy_timeout 15 s")
    print(table(["writers queue on", "commits/s", "wait p50 ms", "wait p99 ms", "wait max ms"], rows))


if __name__ == "__main__":
    main()
