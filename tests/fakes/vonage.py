"""Local TLS fake of Vonage's SMS API ``POST /sms/json`` (stdlib http.server + trustme), on 127.0.0.1 only.

In-process::

    with FakeVonage(tmp_path, faults=Faults(throttle=0.1), dlr_url="http://127.0.0.1:5000/dlr") as fake:
        os.environ["REQUESTS_CA_BUNDLE"] = str(fake.ca_path)  # trust_env: overrides Session.verify
        client = Vonage(Auth(api_key="key", api_secret="secret"),
                        HttpClientOptions(rest_host=fake.host, timeout=5, pool_maxsize=1))
        ...
        assert fake.wait_for(1, timeout=5)
        [sent] = fake.accepted_for("447700900000")
        # sent: {'to', 'from', 'text', 'type', 'client-ref', 'message-ids', 'partial'}

As a process::

    python -m tests.fakes.vonage --port 0 --cert-dir DIR [--log FILE] [--throttle P --http500 P --http429 P
        --drop P --drop-after-accept P --slow P --seed S] [--dlr-url URL]
    -> prints "listening 127.0.0.1:PORT ca=PATH"; every accepted send is appended to --log as a JSON line.

Behaviour by the last 4 digits of ``to`` (vonage.md §2.3): 0001/0002/0004/0009/0015 -> body status
1/2/4/9/15; 0429/0500/0503 -> that HTTP status; 0777 -> HTTP 200 with a non-JSON body; 0888 -> 2 parts,
the second throttled (partial failure; the first part counts as accepted). Anything else is accepted: texts
over 160 GSM-7 septets (70 UTF-16 units if type=unicode) are split into parts of 153/67, one id per part.
Wrong Basic-auth credentials -> HTTP 200, status "4". Random faults (``Faults``) are drawn from a seeded RNG
before that: slow (sleep, then answer normally -- the client may have timed out: still accepted), drop
(close without a response, nothing accepted), http500/http429, throttle (status "1"), drop_after_accept
(recorded as accepted, then closed without a response: the ambiguous case). ``accepted`` lists what a
phone would receive, whatever the client saw (drop_after_accept, slow, 0888 included).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import random
import signal
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self
from urllib.parse import parse_qsl, urlencode, urlsplit

import trustme

ERRORS = {"0001": ("1", "Throttled"), "0002": ("2", "Missing to param"), "0004": ("4", "Bad Credentials"),
          "0009": ("9", "Quota Exceeded - rejected"), "0015": ("15", "Illegal Sender Address - rejected")}
HTTP_ERRORS = {"0429": 429, "0500": 500, "0503": 503}
FAULT_DRAWS = ("slow", "drop", "http500", "http429", "throttle", "drop_after_accept")
GSM7_EXT = set("^{}\\[~]|€\f")  # cost 2 septets each


@dataclass
class Faults:
    """Per-request probabilities (0..1) of injected faults."""
    throttle: float = 0.0
    http500: float = 0.0
    http429: float = 0.0
    drop: float = 0.0
    drop_after_accept: float = 0.0
    slow: float = 0.0
    slow_seconds: float = 2.0


def parts_needed(text: str, typ: str | None) -> int:
    if typ == "unicode":
        units, single, per = len(text.encode("utf-16-le")) // 2, 70, 67
    else:
        units, single, per = sum(2 if c in GSM7_EXT else 1 for c in text), 160, 153
    return 1 if units <= single else -(-units // per)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, addr, handler, fake: FakeVonage):
        self.fake, self.conns = fake, set()
        super().__init__(addr, handler)

    def get_request(self):
        sock, addr = super().get_request()
        # headers and body are written separately: without NODELAY, Nagle + delayed ACK add ~40 ms a response
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conns.add(sock)
        return sock, addr

    def shutdown_request(self, request):
        self.conns.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        pass  # client resets, TLS failures, writes to timed-out clients


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections
    server: _Server

    def log_message(self, *args):
        pass

    def _send(self, outcome: str, code: int, body: str, ctype: str = "application/json") -> None:
        self.entry["outcome"] = outcome  # set before replying: visible as soon as the client has its answer
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _http(self, code: int) -> None:
        self._send(f"http-{code}", code, json.dumps({"title": f"fake {code}"}))

    def _status(self, status: str, text: str) -> None:
        body = {"message-count": "1", "messages": [{"status": status, "error-text": text}]}
        self._send(f"status-{status}", 200, json.dumps(body))

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8", "replace")
        params: dict = {}
        if "json" in self.headers.get("Content-Type", ""):
            with contextlib.suppress(ValueError, AttributeError):
                params = {k: str(v) for k, v in json.loads(raw or "{}").items()}
        if not params:
            params = dict(parse_qsl(raw, keep_blank_values=True))
        self.entry = {"method": "POST", "path": self.path, "headers": dict(self.headers), "params": params,
                      "outcome": None, "time": time.time()}
        with self.server.fake._lock:
            self.server.fake.requests.append(self.entry)
        self._handle(self.server.fake, params)

    def _credentials(self, params: dict) -> tuple[str | None, str | None]:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            with contextlib.suppress(ValueError):
                key, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
                return key, secret
        return params.get("api_key"), params.get("api_secret")

    def _handle(self, fake: FakeVonage, params: dict) -> None:
        if urlsplit(self.path).path != "/sms/json":
            return self._http(404)
        f = fake.faults or Faults()
        with fake._lock:  # fixed number of draws per request keeps a seed's sequence stable
            r = {k: fake._rng.random() for k in FAULT_DRAWS}
        if r["slow"] < f.slow:
            time.sleep(f.slow_seconds)
        if r["drop"] < f.drop:
            return self._drop("drop")
        if r["http500"] < f.http500 or r["http429"] < f.http429:
            return self._http(500 if r["http500"] < f.http500 else 429)
        key, secret = self._credentials(params)
        if not key:
            return self._status("2", "Missing api_key")
        if (key, secret) != (fake.api_key, fake.api_secret):
            return self._status("4", "Bad Credentials")
        if r["throttle"] < f.throttle:
            return self._status("1", "Throttled")
        to, typ = params.get("to", ""), params.get("type")
        for suffix, code in HTTP_ERRORS.items():
            if to.endswith(suffix):
                return self._http(code)
        if to.endswith("0777"):
            return self._send("non-json", 200, "<html>not json</html>", "text/html")
        for suffix, (status, text) in ERRORS.items():
            if to.endswith(suffix):
                return self._status(status, text)
        for k in ("to", "from", "text"):
            if not params.get(k) and not (k == "text" and typ == "binary"):
                return self._status("2", f"Missing {k} param")
        partial = to.endswith("0888")
        n = 2 if partial else parts_needed(params.get("text", ""), typ)
        msgs = []
        for _ in range(n):
            m = {"to": to, "message-id": fake.fixed_message_id or str(uuid.uuid4()), "status": "0",
                 "remaining-balance": "10.00000000",
                 "message-price": "0.03330000", "network": "23410"}
            if params.get("client-ref"):
                m["client-ref"] = params["client-ref"]
            msgs.append(m)
        if partial:
            msgs[1] = {"status": "1", "error-text": "Throttled"}
        fake._accept(params, [m["message-id"] for m in msgs if m["status"] == "0"], partial)
        if r["drop_after_accept"] < f.drop_after_accept:
            return self._drop("drop-after-accept")
        body = json.dumps({"message-count": str(n), "messages": msgs})
        return self._send("partial" if partial else "ok", 200, body)

    def _drop(self, outcome: str) -> None:
        self.entry["outcome"] = outcome
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)  # FIN, no TLS close_notify, no HTTP response


class FakeVonage:
    """See the module docstring. ``faults``, ``dlr_url``, ``dlr_status``, ``dlr_err_code``, ``dlr_delay``,
    ``api_key`` and ``api_secret`` may be changed while running."""

    def __init__(self, cert_dir: Path, port: int = 0, faults: Faults | None = None,
                 dlr_url: str | None = None, seed: int = 0, *, api_key: str = "key",
                 api_secret: str = "secret", log_path: Path | None = None):
        self.cert_dir, self.port = Path(cert_dir), port
        self.faults, self.dlr_url = faults or Faults(), dlr_url
        self.dlr_status, self.dlr_err_code, self.dlr_delay = "delivered", "0", 0.0
        # Vonage retries a DLR its webhook did not acknowledge (for 72 h); here: dlr_retries more tries,
        # dlr_retry_interval apart. With a signature secret, DLRs are signed as documented (vonage.md §3.2).
        self.dlr_retries, self.dlr_retry_interval = 0, 0.5
        self.signature_secret: str | None = None
        self.fixed_message_id: str | None = None  # answer every send with this id (a gateway that repeats ids)
        self.signature_method = "sha256"
        self.api_key, self.api_secret, self.log_path = api_key, api_secret, log_path
        self.requests: list[dict] = []
        self.accepted: list[dict] = []
        self.dlrs: list[dict] = []  # per DLR POST: message-id, status, result (HTTP code or error)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.cert_dir.mkdir(parents=True, exist_ok=True)
        self._ca = trustme.CA()
        self.ca_path = self.cert_dir / "fake-vonage-ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_path))
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ca.issue_cert("127.0.0.1", "localhost").configure_cert(self._ctx)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Self:
        if self._server:
            return self
        srv = _Server(("127.0.0.1", self.port), _Handler, self)
        # handshake lazily in the handler thread, so a slow/bad client cannot block accept()
        srv.socket = self._ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
        self._server, self.port = srv, srv.server_address[1]
        self._thread = threading.Thread(target=srv.serve_forever, args=(0.1,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        srv, self._server = self._server, None
        if not srv:
            return
        srv.shutdown()
        for s in list(srv.conns):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        srv.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def accepted_for(self, to: str) -> list[dict]:
        with self._lock:
            return [a for a in self.accepted if a["to"] == to]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self.accepted.clear()
            self.dlrs.clear()

    def wait_for(self, n: int, timeout: float = 5.0) -> bool:
        """Block until at least n sends have been accepted; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.accepted) >= n, timeout)

    def _accept(self, params: dict, ids: list[str], partial: bool) -> None:
        rec = {k: params.get(k) for k in ("to", "from", "text", "type", "client-ref")}
        rec.update({"message-ids": ids, "partial": partial, "time": time.time()})
        with self._cond:
            self.accepted.append(rec)
            self._cond.notify_all()
            if self.log_path:
                with open(self.log_path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(rec) + "\n")
        if self.dlr_url:
            threading.Thread(target=self._send_dlrs, args=(self.dlr_url, rec), daemon=True).start()

    def _send_dlrs(self, url: str, rec: dict) -> None:
        if self.dlr_delay:
            time.sleep(self.dlr_delay)
        now = datetime.now(UTC)
        for mid in rec["message-ids"]:
            form = {"messageId": mid, "msisdn": rec["to"], "to": rec["from"], "status": self.dlr_status,
                    "err-code": self.dlr_err_code, "network-code": "23410", "price": "0.03330000",
                    "scts": now.strftime("%y%m%d%H%M"), "api-key": self.api_key,
                    "message-timestamp": now.strftime("%Y-%m-%d %H:%M:%S")}
            if rec.get("client-ref"):
                form["client-ref"] = rec["client-ref"]
            for attempt in range(self.dlr_retries + 1):
                if attempt:
                    time.sleep(self.dlr_retry_interval)
                result = self._post_dlr(url, dict(form))
                with self._lock:
                    self.dlrs.append({"message-id": mid, "status": self.dlr_status, "result": result})
                if isinstance(result, int) and 200 <= result < 300:
                    break

    def _post_dlr(self, url: str, form: dict) -> object:
        if self.signature_secret:
            form.update(timestamp=str(int(time.time())), nonce=str(uuid.uuid4()))
            form["sig"] = reference_signature(form, self.signature_secret, self.signature_method)
        req = urllib.request.Request(url, urlencode(form).encode(), method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(req, timeout=3) as resp:
                return resp.status
        except urllib.error.HTTPError as e:
            return e.code
        except Exception as e:  # DLR delivery is best effort
            return f"{type(e).__name__}: {e}"


def reference_signature(params: dict, secret: str, method: str) -> str:
    """Vonage's documented webhook signature ("Signing Messages"; vonage.md §3.3), independent of the app."""
    s = "".join(f"&{k}={str(v).replace('&', '_').replace('=', '_')}"
                for k, v in sorted(params.items()) if k != "sig")
    if method == "md5hash":
        return hashlib.md5((s + secret).encode("utf-8")).hexdigest()
    return hmac.new(secret.encode(), s.encode("utf-8"), getattr(hashlib, method)).hexdigest()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Fake Vonage SMS API (POST /sms/json) over TLS on 127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--cert-dir", type=Path, required=True)
    p.add_argument("--log", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dlr-url")
    p.add_argument("--api-key", default="key")
    p.add_argument("--api-secret", default="secret")
    for name in ("throttle", "http500", "http429", "drop", "drop-after-accept", "slow"):
        p.add_argument(f"--{name}", type=float, default=0.0, metavar="P")
    p.add_argument("--slow-seconds", type=float, default=2.0)
    a = p.parse_args(argv)
    faults = Faults(a.throttle, a.http500, a.http429, a.drop, a.drop_after_accept, a.slow, a.slow_seconds)
    fake = FakeVonage(a.cert_dir, a.port, faults, a.dlr_url, a.seed, api_key=a.api_key,
                      api_secret=a.api_secret, log_path=a.log)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with fake:
        print(f"listening {fake.host} ca={fake.ca_path}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()


if __name__ == "__main__":
    main()
