"""How long from Vonage's webhook to the text on an open dashboard (and its delivery state), in a real browser.

    python -m bench.live_latency [--rounds 30]

Starts `python -m webapp` (SQLite, simulated gateway, outbox worker) on a free port in a temporary directory,
signs a dispatcher in with Debian's Chromium (Playwright), opens one chat page, then for each round POSTs an
inbound SMS to the webhook and measures until the text is in the transcript (doorbell + fragment fetch +
swap) and until its relay shows "submitted" (outbox send + message_status doorbell). Prints percentiles.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
TOKEN, NAME, PASSWORD = "bench-token-0123456789abcdef0123456789", "bench", "bench-password"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="live-latency-"))
    port = _port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("VONAGE_", "SMS_", "DATABASE_", "FLASK_"))},
        "PYTHONPATH": str(ROOT), "PORT": str(port), "DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}",
        "SMS_GATEWAY": "simulated", "API_TOKEN": TOKEN, "PROXY_NUMBERS": "+447700900001",
        "SECRET_KEY": "bench", "OUTBOX_WORKER": "true", "LOG_LEVEL": "WARNING",
    }
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "webapp", "operators", "create", NAME, "--password-stdin"],
        input=PASSWORD + "\n", env=env, cwd=tmp, check=True, capture_output=True, text=True,
    )
    server = subprocess.Popen([sys.executable, "-m", "webapp"], cwd=tmp, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if requests.get(base + "/healthz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        chat = requests.post(
            base + "/api/chats", json={"a": "+447700900111", "b": "+447700900222"},
            headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10,
        ).json()
        shown, states = [], []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(base + "/login")
            page.fill("#name", NAME)
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.goto(f"{base}/chats/{chat['id']}")
            page.wait_for_function("() => document.getElementById('live-status').dataset.state === 'live'")
            for i in range(args.rounds):
                text = f"bench message {i}"
                line = page.locator(".entry.from-a", has_text=text)
                start = time.perf_counter()
                requests.post(
                    base + "/webhooks/inbound-sms",
                    data={"msisdn": "447700900111", "to": chat["proxy_number"].lstrip("+"), "text": text,
                          "messageId": f"bench-{i}"},
                    timeout=10,
                )
                line.wait_for(state="visible")
                shown.append(time.perf_counter() - start)
                line.locator('.state[data-status="submitted"], .state[data-status="delivered"]').wait_for()
                states.append(time.perf_counter() - start)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    for label, values in (("webhook -> text on screen", shown), ("webhook -> 'submitted' on screen", states)):
        print(
            f"{label:34s} n={len(values)} median={statistics.median(values) * 1000:.0f} ms "
            f"p90={_pct(values, 0.9) * 1000:.0f} ms max={max(values) * 1000:.0f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
