"""PostgreSQL restarts: webhooks answer 5xx (Vonage retries) instead of acknowledging what was not stored,
and the app reconnects by itself when the server is back. Runs on a throwaway cluster, not the shared one."""

from __future__ import annotations

import pytest
import requests

from .conftest import A, base_env, wait_until
from .test_processes import inbound, scalar, start_chat_over_api

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_postgres_restart_gives_5xx_then_recovers(throwaway_postgres, start_web):
    url = throwaway_postgres.url
    web = start_web("web", base_env(url))
    chat = start_chat_over_api(web)
    assert inbound(web, A, chat["proxy_number"], "before", "PG-1").status_code == 204

    throwaway_postgres.stop()
    down = inbound(web, A, chat["proxy_number"], "during", "PG-2")
    assert 500 <= down.status_code < 600, down.text
    assert down.json()["error"]  # a JSON error, not an acknowledgement
    assert requests.get(web.url + "/healthz", timeout=10).status_code == 200  # the process itself lives on

    throwaway_postgres.start()

    def retried() -> bool:  # Vonage retries the same messageId until we acknowledge it
        return inbound(web, A, chat["proxy_number"], "during", "PG-2").status_code == 204

    wait_until(retried, timeout=30, interval=0.5, what="the webhook to succeed after the restart")
    assert scalar(url, "SELECT count(*) FROM messages WHERE provider_id = 'PG-2'") == 1
    relay = "SELECT m.status FROM messages m JOIN messages s ON m.source_id = s.id WHERE s.provider_id = 'PG-2'"
    assert scalar(url, relay) in {"queued", "sending", "submitted"}  # its relay was stored with it
    # The outbox worker reconnected by itself: a new chat's introductions go out. (Messages to the first chat's
    # people may wait: one whose send was in flight during the restart is reconciled after its lease.)
    second = start_chat_over_api(web, "+447700900300", "+447700900400")
    intros = "SELECT count(*) FROM messages WHERE chat_id = :c AND kind = 'intro' AND status = 'submitted'"
    wait_until(lambda: scalar(url, intros, c=second["id"]) == 2, what="the outbox to send again after the restart")
