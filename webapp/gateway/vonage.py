"""Vonage SMS API (`POST /sms/json`) through the official `vonage` SDK 4.x.

Facts that shape this module (docs/vonage.md §1.2):
- we call the SDK's HTTP client directly (§1.5): `client.sms.send()` hides the status in an exception
  string and raises TypeError on a non-JSON 200;
- `pool_maxsize=1`, because the SDK re-POSTs up to pool_maxsize times on `RemoteDisconnected` (duplicate SMS);
- a timeout is always set (the SDK's default waits forever);
- no signature secret on the sending client (signed sends are broken in 4.9.1).
"""

from __future__ import annotations

import logging
import threading

import requests
import urllib3.exceptions
from vonage import Auth, HttpClientOptions, Vonage
from vonage_http_client import HttpRequestError, RateLimitedError

from ..proxy import mask_for_log, sms_type, to_vonage
from .base import SendResult

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {"1", "5", "10"}  # Throttled, Internal Error, Too Many Existing Binds

# Exceptions that prove the request never left this machine, so a resend cannot duplicate it.
_NOT_SENT = (
    urllib3.exceptions.NewConnectionError,
    urllib3.exceptions.ConnectTimeoutError,
    urllib3.exceptions.NameResolutionError,
    ConnectionRefusedError,
)


def _never_sent(exc: BaseException) -> bool:
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, (*_NOT_SENT, requests.ConnectTimeout)):
            return True
        for nxt in (e.__cause__, e.__context__, getattr(e, "reason", None), *e.args):
            if isinstance(nxt, BaseException):
                stack.append(nxt)
    return False


def _settle_environment(session: requests.Session, url: str) -> None:
    """Read the environment's proxy and CA settings once, instead of on every request.

    With `trust_env` on (the default), requests re-reads HTTPS_PROXY/NO_PROXY and REQUESTS_CA_BUNDLE from
    os.environ for every request: about a fifth of the CPU of a send (BENCHMARKS.md). The settings it would
    find are fixed here, for this client's one URL, and the per-request lookup is turned off.
    """
    settings = session.merge_environment_settings(url, {}, None, None, None)
    session.proxies.update(settings.get("proxies") or {})
    session.verify = settings.get("verify", True)
    if settings.get("cert"):
        session.cert = settings["cert"]
    session.trust_env = False


class VonageGateway:
    name = "vonage"

    def __init__(
        self, *, api_key: str, api_secret: str, rest_host: str, api_host: str, timeout: int = 10
    ) -> None:
        self._auth = (api_key, api_secret)
        self._options = HttpClientOptions(
            rest_host=rest_host,
            api_host=api_host,
            timeout=int(timeout),
            pool_maxsize=1,  # the SDK re-POSTs up to pool_maxsize times on RemoteDisconnected
        )
        # The SDK's HTTP client keeps per-call state (shared headers, last_response), so each sending thread
        # gets its own client (and its own keep-alive connection); the outbox sends from a few threads.
        self._local = threading.local()

    def _client(self) -> Vonage:
        client = getattr(self._local, "client", None)
        if client is None:
            client = Vonage(Auth(api_key=self._auth[0], api_secret=self._auth[1]), self._options)
            _settle_environment(client.http_client._session, f"https://{self._options.rest_host}/sms/json")
            self._local.client = client
        return client

    def send(self, *, to: str, sender: str, text: str, client_ref: str) -> SendResult:
        params = {
            "from": to_vonage(sender),
            "to": to_vonage(to),
            "text": text,
            "type": sms_type(text),
            "client-ref": client_ref,
        }
        hc = self._client().http_client
        try:
            data = hc.post(hc.rest_host, "/sms/json", params, "basic", "form")
        except RateLimitedError as exc:
            return SendResult(False, retryable=True, http_status=429, error=f"HTTP 429: {exc}")
        except HttpRequestError as exc:
            code = exc.response.status_code
            return SendResult(False, retryable=code >= 500, http_status=code, error=f"HTTP {code}")
        except requests.RequestException as exc:
            if _never_sent(exc):
                return SendResult(False, retryable=True, error=f"connection failed: {type(exc).__name__}")
            # Read timeout or a dropped connection after the request went out: Vonage may have it.
            return SendResult(False, ambiguous=True, error=f"no answer: {type(exc).__name__}")
        except Exception as exc:  # the SDK raising anything else: we cannot tell whether Vonage has it
            log.warning("vonage sdk raised %s sending to %s", type(exc).__name__, mask_for_log(to))
            return SendResult(False, ambiguous=True, error=f"sdk error: {type(exc).__name__}")
        if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
            return SendResult(False, ambiguous=True, error="unparseable response from Vonage")
        parts = data["messages"]
        ids = [str(p["message-id"]) for p in parts if p.get("status") == "0" and p.get("message-id")]
        bad = [p for p in parts if p.get("status") != "0"]
        if not bad:  # the outbox logs the send once it is recorded
            log.debug("vonage accepted sms to %s (%d part(s))", mask_for_log(to), len(ids))
            return SendResult(True, status="0", message_ids=ids, http_status=200)
        first = bad[0]
        status = str(first.get("status"))
        # A partial failure (some parts accepted) is not retried: it would re-send the accepted parts.
        retryable = status in RETRYABLE_STATUS and not ids
        error = f"status {status}: {first.get('error-text') or 'rejected'}"
        if ids:
            error += f" ({len(ids)} of {len(parts)} parts accepted)"
        return SendResult(
            False, retryable=retryable, status=status, error=error, message_ids=ids, http_status=200
        )
