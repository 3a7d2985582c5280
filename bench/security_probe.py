"""Re-run the attacker's probes of issue 9 ("Secure by default") against real server processes; print what each
answered. Not a benchmark: a record of behaviour (README, Security; docs/security.md).

    .venv/bin/python -m bench.security_probe              # every probe (a few minutes on 2 cores)
    .venv/bin/python -m bench.security_probe sockets      # only some: webhooks autoreply sessions throttle
                                                          #   sockets exposure input

Every server runs on a free loopback port in a temporary folder and is stopped (by pid) at the end.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import secrets
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from .common import API_TOKEN, PROXY, ROOT, SECRET_KEY, Server, free_port, workdir

CSRF_RE = re.compile(r'name="csrf-token" content="([^"]+)"')
A, B = "+447700900111", "+447700900222"
OPERATOR, PASSWORD = "maria", "correct horse battery"
RESULTS: list[tuple[str, str, str]] = []


def record(finding: str, ran: str, answered: str) -> None:
    RESULTS.append((finding, ran, answered))
    print(f"- {finding}\n    ran: {ran}\n    answered: {answered}", flush=True)


def env_for(tmp: Path, **extra: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "VONAGE_", "SOCKETIO_", "SMS_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        SECRET_KEY=SECRET_KEY,
        DATABASE_URL=f"sqlite:///{tmp / 'probe.db'}",
        PROXY_NUMBERS=PROXY,
        SMS_GATEWAY="simulated",
        API_TOKEN=API_TOKEN,
        LOG_LEVEL="INFO",
        OUTBOX_WORKER="false",
        SIMULATED_RECEIPT_SECONDS="0",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


def flask(env: dict[str, str], cwd: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flask", "--app", "webapp", *args], input=stdin, env=env,
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def api(server: Server, method: str, path: str, headers: dict | None = None, **kw: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {API_TOKEN}", **(headers or {})}
    return requests.request(method, server.url + path, headers=headers, timeout=30, **kw)


def sql(tmp: Path, query: str) -> Any:
    import sqlite3

    with contextlib.closing(sqlite3.connect(tmp / "probe.db")) as conn:
        return conn.execute(query).fetchall()


def sign_in(server: Server, name: str = OPERATOR, password: str = PASSWORD) -> str:
    page = requests.get(server.url + "/login", timeout=10)
    token = CSRF_RE.search(page.text).group(1)
    resp = requests.post(server.url + "/login", data={"name": name, "password": password, "csrf_token": token},
                         headers={"Cookie": f"session={page.cookies['session']}"}, allow_redirects=False, timeout=30)
    assert resp.status_code == 302, resp.status_code
    return resp.cookies["session"]


def with_cookie(cookie: str) -> dict[str, str]:
    return {"Cookie": f"session={cookie}"}


def websocket_status(port: int, cookie: str | None = None, origin: str | None = None) -> tuple[socket.socket, int]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    lines = [
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket",
        "Connection: Upgrade", f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
        "Sec-WebSocket-Version: 13",
    ]
    if cookie:
        lines.append(f"Cookie: session={cookie}")
    if origin:
        lines.append(f"Origin: {origin}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock, int(sock.recv(4096).split(b"\r\n", 1)[0].split()[1])


def threads_of(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"Threads:\s+(\d+)", text).group(1))


def webhook_times(server: Server, n: int = 5) -> list[float]:
    out = []
    for _ in range(n):
        start = time.monotonic()
        resp = requests.post(server.url + "/webhooks/inbound-sms", timeout=30, data={
            "msisdn": "447700900999", "to": PROXY[1:], "text": "ping", "messageId": secrets.token_hex(8)})
        out.append(time.monotonic() - start)
        assert resp.status_code == 204, resp.text
    return out


def parallel(n: int, fn: Callable[[int], int]) -> list[int]:
    barrier = threading.Barrier(n)

    def go(i: int) -> int:
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(go, range(n)))


# ------------------------------------------------------------------ probes


def probe_webhooks() -> None:
    with workdir("probe-webhooks-") as tmp:
        env = env_for(tmp, SMS_GATEWAY="vonage", VONAGE_API_KEY="key", VONAGE_API_SECRET="secret", PORT=free_port())
        proc = subprocess.run([sys.executable, "-m", "webapp"], env=env, cwd=tmp, capture_output=True, text=True,
                              timeout=60)
        record("Unsigned webhooks are the default (SMS_GATEWAY=vonage, no secret, no token)",
               "python -m webapp", f"exit {proc.returncode}; stderr: {proc.stderr.strip()[:240]}…")

        token = secrets.token_urlsafe(32)
        server = Server("werkzeug", env_for(tmp, WEBHOOK_TOKEN=token, MULTIPART_TIMEOUT_SECONDS=1), tmp)
        try:
            api(server, "POST", "/api/chats", json={"a": A, "b": B})
            forged = requests.post(server.url + "/webhooks/inbound-sms", timeout=10, data={
                "msisdn": A[1:], "to": PROXY[1:], "text": "It's me: send the code", "messageId": "F-1"})
            relays = sql(tmp, "SELECT count(*) FROM messages WHERE kind = 'relay'")[0][0]
            record("Forged text from a party's number", "POST /webhooks/inbound-sms msisdn=<A> (no token)",
                   f"{forged.status_code} {forged.json()['error']!r}; relays queued: {relays}")
            intro = sql(tmp, "SELECT id FROM messages WHERE kind = 'intro' LIMIT 1")[0][0]
            dlr = requests.post(server.url + "/webhooks/delivery-receipt", timeout=10, data={
                "messageId": "X", "status": "failed", "err-code": "6", "client-ref": f"m{intro}"})
            state = sql(tmp, f"SELECT status FROM messages WHERE id = {intro}")[0][0]
            record("Forged delivery receipt", f"POST /webhooks/delivery-receipt client-ref=m{intro} status=failed",
                   f"{dlr.status_code}; message {intro} stays {state!r}")
            spoof = requests.post(server.url + "/webhooks/inbound-sms", timeout=10, data={
                "msisdn": A[1:], "to": PROXY[1:], "text": "x", "messageId": "S-1", "concat-ref": "1",
                "concat-total": "255", "concat-part": "1"})
            record("Spoofed 255-part multipart set", "one part of 255, no token",
                   f"{spoof.status_code}; held parts: {sql(tmp, 'SELECT count(*) FROM held_parts')[0][0]}")
            ok = requests.post(f"{server.url}/webhooks/inbound-sms?token={token}", timeout=10, data={
                "msisdn": A[1:], "to": PROXY[1:], "text": "real", "messageId": "R-1"})
            record("The same webhook with ?token=<WEBHOOK_TOKEN>", "POST ...?token=…", f"{ok.status_code}")
        finally:
            server.stop()

    with workdir("probe-multipart-") as tmp:  # what the spoof costs where unsigned is allowed (simulated)
        server = Server("werkzeug", env_for(tmp, MULTIPART_TIMEOUT_SECONDS=1, OUTBOX_WORKER="true"), tmp)
        try:
            api(server, "POST", "/api/chats", json={"a": A, "b": B})
            requests.post(server.url + "/webhooks/inbound-sms", timeout=10, data={
                "msisdn": A[1:], "to": PROXY[1:], "text": "x", "messageId": "S-1", "concat-ref": "1",
                "concat-total": "255", "concat-part": "1"})
            deadline = time.monotonic() + 30
            rows: list = []
            while time.monotonic() < deadline and not rows:
                time.sleep(0.5)
                rows = sql(tmp, "SELECT text FROM messages WHERE kind = 'relay'")
            from webapp.proxy import segments

            text = rows[0][0] if rows else ""
            record("Spoofed 255-part set where unsigned webhooks are allowed (simulated gateway)",
                   "one part of 255, flushed after MULTIPART_TIMEOUT_SECONDS",
                   f"relay {text!r}: {segments(text)} segment(s)")
        finally:
            server.stop()


def probe_autoreply() -> None:
    with workdir("probe-autoreply-") as tmp:
        server = Server("werkzeug", env_for(tmp), tmp)
        try:
            senders = [f"+4479{secrets.randbelow(10**8):08d}" for _ in range(1480)]
            senders += ["+19005550123"] * 10 + [f"+88212345{i:04d}" for i in range(10)]

            def post(i_sender: tuple[int, str]) -> int:
                i, sender = i_sender
                return requests.post(server.url + "/webhooks/inbound-sms", timeout=60, data={
                    "msisdn": sender[1:], "to": PROXY[1:], "text": "hi", "messageId": f"AR-{i}"}).status_code

            with ThreadPoolExecutor(8) as pool:
                codes = list(pool.map(post, enumerate(senders)))
            total = sql(tmp, "SELECT count(*) FROM messages WHERE kind = 'auto_reply'")[0][0]
            odd = sql(tmp, "SELECT count(*) FROM messages WHERE kind = 'auto_reply' AND "
                           "(to_number LIKE '+1900%' OR to_number LIKE '+882%')")[0][0]
            record("Auto-replies at our cost", "1,500 webhooks from random senders (incl. +1 900 and +882)",
                   f"{codes.count(204)} stored (204); {total} auto-replies queued, {odd} to +1 900/+882")
        finally:
            server.stop()


def probe_sessions() -> None:
    with workdir("probe-sessions-") as tmp:
        env = env_for(tmp)
        flask(env, tmp, "operators", "create", OPERATOR, "--admin", "--password-stdin", stdin=PASSWORD + "\n")
        server = Server("werkzeug", env, tmp)
        try:
            cookie = sign_in(server)
            page = requests.get(server.url + "/", headers=with_cookie(cookie), timeout=10)
            token = CSRF_RE.search(page.text).group(1)
            current = page.cookies.get("session", cookie)
            requests.post(server.url + "/logout", data={"csrf_token": token}, headers=with_cookie(current),
                          allow_redirects=False, timeout=10)
            after = requests.get(server.url + "/", headers=with_cookie(cookie), allow_redirects=False, timeout=10)
            pair = requests.post(server.url + "/chats", data={"a": A, "b": B, "csrf_token": token},
                                 headers={**with_cookie(current), "HX-Request": "true"}, timeout=10)
            _sock, ws = websocket_status(server.port, cookie)
            _sock.close()
        finally:
            server.stop()
        server = Server("werkzeug", env, tmp)  # a restart
        try:
            restarted = requests.get(server.url + "/", headers=with_cookie(cookie), allow_redirects=False, timeout=10)
        finally:
            server.stop()
        record("Sign-out does not end the session", "cookie copied before sign-out, then used",
               f"GET / {after.status_code} -> {after.headers.get('Location')}; POST /chats {pair.status_code}; "
               f"socket {ws}; after a restart GET / {restarted.status_code}")
        server = Server("werkzeug", env, tmp)
        try:
            cookie = sign_in(server)
            import socketio

            client = socketio.Client(reconnection=False)
            client.connect(server.url, headers=with_cookie(cookie), transports=["websocket"], wait_timeout=10)
            start = time.monotonic()
            out = flask(env, tmp, "operators", "disable", OPERATOR)
            while client.connected and time.monotonic() - start < 10:
                time.sleep(0.05)
            took = time.monotonic() - start
            page = requests.get(server.url + "/", headers=with_cookie(cookie), allow_redirects=False, timeout=10)
            client.disconnect()
            record("No way to disable an operator", "flask operators disable maria (while signed in, socket open)",
                   f"{out.stdout.strip()!r}; socket closed {not client.connected} within {took:.1f} s "
                   f"(command included); GET / {page.status_code}")
        finally:
            server.stop()


def probe_throttle() -> None:
    with workdir("probe-throttle-") as tmp:
        env = env_for(tmp)
        flask(env, tmp, "operators", "create", OPERATOR, "--password-stdin", stdin=PASSWORD + "\n")
        server = Server("werkzeug", env, tmp)
        try:
            page = requests.get(server.url + "/login", timeout=10)
            token, cookie = CSRF_RE.search(page.text).group(1), page.cookies["session"]

            def attempt(name: str, password: str) -> int:
                return requests.post(server.url + "/login", data={"name": name, "password": password,
                                     "csrf_token": token}, headers=with_cookie(cookie), allow_redirects=False,
                                     timeout=60).status_code

            codes = parallel(30, lambda i: attempt(OPERATOR, f"guess-{i}"))
            record("Throttle races: 30 parallel wrong passwords for one name", "30 threads, one barrier",
                   f"{sum(c != 429 for c in codes)} checked (200 'do not match'), {codes.count(429)} got 429")
        finally:
            server.stop()
        server = Server("werkzeug", env_for(tmp, DATABASE_URL=f"sqlite:///{tmp / 'probe2.db'}"), tmp)
        try:
            flask(env_for(tmp, DATABASE_URL=f"sqlite:///{tmp / 'probe2.db'}"), tmp, "operators", "create", OPERATOR,
                  "--password-stdin", stdin=PASSWORD + "\n")
            page = requests.get(server.url + "/login", timeout=10)
            token, cookie = CSRF_RE.search(page.text).group(1), page.cookies["session"]
            codes = parallel(40, lambda i: attempt(f"nobody-{secrets.token_hex(4)}", "x" * 12))
            real = attempt(OPERATOR, PASSWORD)
            record("Random-name failures lock a real operator out", "40 parallel random names, then the real one",
                   f"random: {sorted(set(codes))}; the real operator, same address, right after: {real}")
        finally:
            server.stop()


def probe_sockets() -> None:
    with workdir("probe-sockets-") as tmp:
        for kind, n in (("gunicorn", 100), ("gunicorn", 200), ("werkzeug", 300)):
            server = Server(kind, env_for(tmp), tmp, threads=100)
            held: list[socket.socket] = []
            try:
                pid = server.pids()[-1]
                before = threads_of(pid)
                statuses = []
                for _ in range(n):
                    sock, status = websocket_status(server.port)
                    held.append(sock)
                    statuses.append(status)
                time.sleep(1)
                times = webhook_times(server)
                label = "python -m webapp" if kind == "werkzeug" else "gunicorn -w 1 --threads 100"
                record(f"Idle sockets starve the server ({label})", f"{n} cookieless websocket handshakes, held open",
                       f"answers {sorted(set(statuses))}; webhook {max(times) * 1000:.0f} ms at most (5 tries); "
                       f"threads {before} -> {threads_of(pid)}")
            finally:
                for sock in held:
                    with contextlib.suppress(OSError):
                        sock.close()
                server.stop()
        server = Server("gunicorn", env_for(tmp), tmp, threads=100)
        held = []
        try:  # slow clients: read on the worker's event loop (webapp/httpworker.py), so they hold no thread
            for _ in range(110):
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
                sock.sendall(b"POST /webhooks/inbound-sms HTTP/1.1\r\nHost: x\r\n")  # and then nothing
                held.append(sock)
            time.sleep(1)
            try:
                times = webhook_times(server, 3)
                answered = f"webhook {max(times) * 1000:.0f} ms at most"
            except requests.RequestException as exc:
                answered = f"webhook failed: {type(exc).__name__}"
            record("110 slow clients under gunicorn (the documented command, with its worker)",
                   "110 connections that send half a request and stop", answered)
        finally:
            for sock in held:
                with contextlib.suppress(OSError):
                    sock.close()
            server.stop()


def probe_exposure() -> None:
    import logging

    from webapp.logs import RedactingFormatter

    with workdir("probe-exposure-") as tmp:
        from sqlalchemy import create_engine, text

        from .common import postgres_database

        database = postgres_database()
        try:
            engine = create_engine(database.url, hide_parameters=True)
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT CAST(:n AS int), CAST(:t AS text)"), {"n": "+447700900111",
                                                                                    "t": "my PIN is 4321"})
            except Exception as exc:
                line = RedactingFormatter("%(message)s").format(logging.LogRecord("x", 40, "", 0, str(exc), None, None))
                record("PostgreSQL error logs parameters", "a failing statement with a number and a body",
                       line.replace("\n", " ")[:200])
            engine.dispose()
        finally:
            database.close()
        env = env_for(tmp)
        flask(env, tmp, "init-db")
        modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in sorted(tmp.iterdir()) if "probe" in p.name}
        instance = oct(stat.S_IMODE((ROOT / "instance").stat().st_mode))
        record("SQLite files 0644 in a 0755 folder", "flask init-db; stat", f"{modes}; instance/ {instance}")
        code = ("import os, stat; from pathlib import Path; os.umask(0); from webapp.instance import secret_key;"
                f"d = Path({str(tmp)!r}); secret_key(d); print(oct(stat.S_IMODE(os.stat(d / 'secret_key').st_mode)))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.strip()
        record("instance/secret_key briefly 0644", "secret_key() in a process with umask 0",
               f"created {out} (os.open with mode 0600, linked into place)")


def probe_input() -> None:
    from .common import postgres_database

    database = postgres_database()
    with workdir("probe-input-") as tmp:
        server = Server("werkzeug", env_for(tmp, DATABASE_URL=database.url, SESSION_COOKIE_SECURE="true"), tmp)
        try:
            nul = requests.post(server.url + "/webhooks/inbound-sms", timeout=10, data={
                "msisdn": "447700900999", "to": PROXY[1:], "text": "a\x00b", "messageId": "NUL-1"})
            record("NUL character (PostgreSQL)", "POST text=a%00b", f"{nul.status_code} {nul.json()}")
            deep = '{"msisdn": "447700900999", "to": "447700900001", "x": ' + "[" * 5000 + "]" * 5000 + "}"
            resp = requests.post(server.url + "/webhooks/inbound-sms", data=deep, timeout=10,
                                 headers={"Content-Type": "application/json"})
            api_deep = api(server, "POST", "/api/chats", data=deep, headers={"Content-Type": "application/json"})
            record("JSON nested 5,000 deep", "webhook and POST /api/chats",
                   f"{resp.status_code} {resp.json()}; API {api_deep.status_code}")
            big = api(server, "GET", "/api/chats/99999999999999999999999")
            record("Integer id out of range", "GET /api/chats/99999999999999999999999",
                   f"{big.status_code} {big.json()}")
            wrong = [requests.get(server.url + "/api/chats", headers={"Authorization": "Bearer nope"},
                                  timeout=10).status_code for _ in range(12)]
            record("Wrong bearer tokens never slowed", "12 wrong tokens in a row", f"{wrong}")
            _s, foreign = websocket_status(server.port, origin="https://evil.example")
            _s.close()
            record("Socket.IO origin check off", "websocket with Origin: https://evil.example (no cookie)",
                   f"{foreign} (a signed-in cookie from that origin: 403, tests/security/test_live_admission.py)")
            lan = requests.Session()
            page = lan.get(server.url + "/login", headers={"Host": "dispatch.lan"}, timeout=10)
            # A browser keeps a Secure cookie off plain HTTP; requests' jar would send it back to 127.0.0.1.
            lan.cookies.clear()
            form = lan.post(server.url + "/login", headers={"Host": "dispatch.lan"}, timeout=10, data={
                "name": "x", "password": "y", "csrf_token": CSRF_RE.search(page.text).group(1)})
            said = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", form.text))
            hint = "SESSION_COOKIE_SECURE=false" in said
            record("Bare CSRF page over plain HTTP on a LAN name", "sign-in at http://dispatch.lan (Secure cookie)",
                   f"{form.status_code}; the page names SESSION_COOKIE_SECURE=false and HTTPS: {hint}")
        finally:
            server.stop()
            database.close()
        env = env_for(tmp, API_TOKEN="a", PORT=free_port())
        proc = subprocess.run([sys.executable, "-m", "webapp"], env=env, cwd=tmp, capture_output=True, text=True,
                              timeout=60)
        record("API_TOKEN=a accepted silently", "API_TOKEN=a python -m webapp",
               f"exit {proc.returncode}; {proc.stderr.strip()[:160]}…")


PROBES = {"webhooks": probe_webhooks, "autoreply": probe_autoreply, "sessions": probe_sessions,
          "throttle": probe_throttle, "sockets": probe_sockets, "exposure": probe_exposure, "input": probe_input}


def main() -> None:
    chosen = sys.argv[1:] or list(PROBES)
    for name in chosen:
        print(f"## {name}", flush=True)
        PROBES[name]()


if __name__ == "__main__":
    main()
