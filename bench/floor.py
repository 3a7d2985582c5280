"""The server's floor: GET /healthz (no database, no signature) under the same load as bench.ingest, to show
what the web stack alone costs per request before any webhook work.

    python -m bench.floor [--seconds 4] [--connections 32]
"""

from __future__ import annotations

import argparse
import re
import subprocess

from .common import Server, app_env, cpu_seconds, machine, table, workdir

SETUPS = [
    ("python -m webapp (gunicorn gthread)", "main", 1, 100),
    ("werkzeug (python -m webapp, DEBUG=true)", "werkzeug", 1, 100),
    ("gunicorn -w 1 --threads 100", "gunicorn", 1, 100),
    ("gunicorn -w 1 --threads 4", "gunicorn", 1, 4),
    ("gunicorn -w 2 --threads 4", "gunicorn", 2, 4),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--connections", type=int, default=32)
    a = p.parse_args()
    rows = []
    with workdir("bench-floor-") as wd:
        for label, kind, workers, threads in SETUPS:
            server = Server(kind, app_env(f"sqlite:///{wd}/floor.db"), wd, threads=threads, workers=workers)
            try:
                pids = server.pids()
                c0 = cpu_seconds(pids)
                out = subprocess.run(
                    ["wrk", "-t2", f"-c{a.connections}", f"-d{a.seconds:g}s", server.url + "/healthz"],
                    capture_output=True,
                    text=True,
                    timeout=a.seconds + 30,
                ).stdout
                c1 = cpu_seconds(pids)
                n = int(re.search(r"(\d+) requests in", out).group(1))
                rate = float(re.search(r"Requests/sec:\s+(\S+)", out).group(1))
                rows.append([label, n, f"{rate:,.0f}", f"{(c1 - c0) * 1000 / n:.2f}"])
            finally:
                server.stop()
    print(f"machine: {machine()}")
    print(f"load: wrk, {a.connections} connections, {a.seconds:g} s, GET /healthz")
    print(table(["server", "requests", "requests/s", "app CPU ms/request"], rows))


if __name__ == "__main__":
    main()
