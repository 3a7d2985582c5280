"""Tests of the Vonage fake itself (tests/fakes/vonage.py), driven through the real vonage SDK."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import pytest
import requests
from vonage import Auth, HttpClientOptions, Vonage
from vonage_http_client import RateLimitedError
from vonage_sms import SmsError, SmsMessage

from tests.fakes.vonage import FakeVonage, Faults


@pytest.fixture
def fake(tmp_path, monkeypatch):
    with FakeVonage(tmp_path / "certs") as f:
        # requests' trust_env: the env var overrides Session.verify (vonage.md §2.2)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(f.ca_path))
        yield f


def make_client(fake, secret="secret"):
    return Vonage(Auth(api_key="key", api_secret=secret),
                  HttpClientOptions(rest_host=fake.host, timeout=5, pool_maxsize=1))


@pytest.fixture
def vonage_client(fake):
    return make_client(fake)


@pytest.fixture
def dlr_sink():
    received: list[dict] = []

    class Sink(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            received.append(dict(parse_qsl(body)))
            self.send_response(204)
            self.end_headers()

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=srv.serve_forever, args=(0.1,), daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/webhooks/dlr", received
    srv.shutdown()
    srv.server_close()


def test_ok_send_is_recorded(fake, vonage_client):
    msg = SmsMessage(to="447700900000", from_="AcmeInc", text="Hello", client_ref="conv-1")
    resp = vonage_client.sms.send(msg)
    assert resp.message_count == "1"
    assert resp.messages[0].status == "0"
    assert fake.wait_for(1, timeout=1)
    [sent] = fake.accepted_for("447700900000")
    assert (sent["from"], sent["to"], sent["text"]) == ("AcmeInc", "447700900000", "Hello")
    assert sent["client-ref"] == "conv-1"
    assert sent["message-ids"] == [resp.messages[0].message_id]
    [req] = fake.requests
    assert req["path"] == "/sms/json" and req["outcome"] == "ok"
    assert req["headers"]["Authorization"].startswith("Basic ")


def test_unicode_type_passed_through(fake, vonage_client):
    vonage_client.sms.send(SmsMessage(to="447700900010", from_="AcmeInc", text="Привет 👍", type="unicode"))
    [sent] = fake.accepted
    assert sent["type"] == "unicode" and sent["text"] == "Привет 👍"


@pytest.mark.parametrize(("text", "typ", "parts"), [
    ("x" * 160, None, 1), ("x" * 161, None, 2), ("x" * 307, None, 3),
    ("я" * 70, "unicode", 1), ("я" * 71, "unicode", 2),
])
def test_multipart_returns_one_id_per_part(fake, vonage_client, text, typ, parts):
    resp = vonage_client.sms.send(SmsMessage(to="447700900020", from_="AcmeInc", text=text, type=typ))
    assert resp.message_count == str(parts)
    ids = [m.message_id for m in resp.messages]
    assert len(set(ids)) == parts
    assert fake.accepted[0]["message-ids"] == ids


def test_0429_raises_rate_limited(fake, vonage_client):
    with pytest.raises(RateLimitedError):
        vonage_client.sms.send(SmsMessage(to="447700900429", from_="AcmeInc", text="hi"))
    assert fake.accepted == [] and fake.requests[0]["outcome"] == "http-429"


def test_bad_credentials_is_status_4(fake):
    with pytest.raises(SmsError, match="error code 4"):
        make_client(fake, secret="wrong").sms.send(SmsMessage(to="447700900000", from_="AcmeInc", text="hi"))
    assert fake.accepted == []


def test_drop_fault_is_connection_error_and_not_accepted(fake, vonage_client):
    fake.faults = Faults(drop=1.0)
    with pytest.raises(requests.ConnectionError):
        vonage_client.sms.send(SmsMessage(to="447700900000", from_="AcmeInc", text="hi"))
    assert len(fake.requests) == 1  # pool_maxsize=1: the SDK does not re-POST
    assert fake.accepted == []


def test_drop_after_accept_is_connection_error_but_accepted(fake, vonage_client):
    fake.faults = Faults(drop_after_accept=1.0)
    with pytest.raises(requests.ConnectionError):
        vonage_client.sms.send(SmsMessage(to="447700900000", from_="AcmeInc", text="hi"))
    assert len(fake.accepted) == 1


def test_dlr_posted_per_part(fake, vonage_client, dlr_sink):
    url, received = dlr_sink
    fake.dlr_url = url
    msg = SmsMessage(to="447700900030", from_="AcmeInc", text="x" * 200, client_ref="conv-9")
    resp = vonage_client.sms.send(msg)
    ids = sorted(m.message_id for m in resp.messages)
    for _ in range(50):
        if len(fake.dlrs) == 2:
            break
        threading.Event().wait(0.05)
    assert sorted(d["messageId"] for d in received) == ids
    assert all(d["msisdn"] == "447700900030" and d["to"] == "AcmeInc" and d["status"] == "delivered"
               and d["client-ref"] == "conv-9" and d["api-key"] == "key" for d in received)
