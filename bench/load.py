"""HTTP load for the benchmarks: wrk (Debian `wrk`, C, light on the CPU we measure) when installed, else a
small asyncio keep-alive client. Both POST pre-built webhook bodies, each once, over N connections."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .common import percentile

LUA = Path(__file__).with_name("wrk_post.lua")


@dataclass
class LoadResult:
    tool: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run_load(url: str, bodies_file: Path, connections: int, seconds: float, threads: int = 2) -> LoadResult:
    if shutil.which("wrk"):
        return _wrk(url, bodies_file, connections, seconds, threads)
    return asyncio.run(_asyncio_load(url, bodies_file, connections, seconds))


def _wrk(url: str, bodies_file: Path, connections: int, seconds: float, threads: int) -> LoadResult:
    cmd = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
        "--",
        str(bodies_file),
        str(threads),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    m = re.search(r"RESULT (.*)", out)
    if not m:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    f = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    return LoadResult(
        "wrk",
        int(f["requests"]),
        f["duration_us"] / 1e6,
        f["p50_us"] / 1000,
        f["p99_us"] / 1000,
        int(f["non2xx"]),
        int(f["socket_errors"]),
    )


async def _asyncio_load(url: str, bodies_file: Path, connections: int, seconds: float) -> LoadResult:
    host, port = re.match(r"http://([^:/]+):(\d+)", url).groups()
    bodies = bodies_file.read_text().splitlines()
    latencies: list[float] = []
    bad = errors = 0
    deadline = time.perf_counter() + seconds
    next_body = iter(range(len(bodies)))

    async def worker() -> None:
        nonlocal bad, errors
        reader, writer = await asyncio.open_connection(host, int(port))
        while time.perf_counter() < deadline:
            i = next(next_body, None)
            if i is None:
                break
            body = bodies[i].encode()
            head = (
                f"POST /webhooks/inbound-sms HTTP/1.1\r\nHost: {host}\r\n"
                f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            t0 = time.perf_counter()
            writer.write(head.encode() + body)
            try:
                status = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if length:
                    await reader.readexactly(length)
            except (OSError, asyncio.IncompleteReadError):
                errors += 1
                break
            latencies.append(time.perf_counter() - t0)
            if not status.split()[1].startswith(b"2"):
                bad += 1
        writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    took = time.perf_counter() - t0
    ms = [v * 1000 for v in latencies]
    return LoadResult("asyncio", len(latencies), took, percentile(ms, 50), percentile(ms, 99), bad, errors)
