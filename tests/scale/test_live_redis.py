"""Several web processes reach every dashboard through Redis (SOCKETIO_MESSAGE_QUEUE); without it, degrade."""

from __future__ import annotations

import secrets

import pytest
import redis
import requests

from tests.conftest import app_config
from webapp import create_app, prepare_database

from .conftest import API_TOKEN, SECRET, A, base_env, wait_until
from .live_client import LiveClient, mentions, operator_cookie
from .test_processes import inbound, scalar, start_chat_over_api

pytestmark = [pytest.mark.slow, pytest.mark.redis]


def setup_db(tmp_path, database_url) -> str:
    """Schema and an operator in the shared database; returns that operator's session cookie."""
    app = create_app(app_config(tmp_path, SQLALCHEMY_DATABASE_URI=database_url, SECRET_KEY=SECRET))
    prepare_database(app)
    cookie = operator_cookie(app)
    with app.app_context():
        from webapp.extensions import db

        db.engine.dispose()
    return cookie


def subscribers(url: str, channel: str) -> int:
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        return int(dict(client.pubsub_numsub(channel)).get(channel.encode(), 0))
    except redis.RedisError:
        return 0
    finally:
        client.close()


def message_id(database_url: str, provider_id: str) -> int:
    return wait_until(
        lambda: scalar(database_url, "SELECT id FROM messages WHERE provider_id = :p", p=provider_id),
        what="the message row",
    )


@pytest.mark.sqlite_only
def test_anonymous_socket_is_refused(tmp_path, database_url, start_web):
    web = start_web("web", base_env(database_url))
    client = LiveClient(web.url, "not-a-session")
    with pytest.raises(Exception, match=r"(?i)connect"):
        client.connect()


def test_event_from_one_process_reaches_a_dashboard_on_another(tmp_path, database_url, redis_url, start_web):
    channel = f"smsproxy-test-{secrets.token_hex(4)}"  # this run only, on the shared Redis
    cookie = setup_db(tmp_path, database_url)
    env = base_env(database_url, SOCKETIO_MESSAGE_QUEUE=redis_url, SOCKETIO_CHANNEL=channel)
    web_a = start_web("web-a", env)
    web_b = start_web("web-b", {**env, "OUTBOX_WORKER": "false"})
    client = LiveClient(web_b.url, cookie).connect()
    try:
        wait_until(lambda: subscribers(redis_url, channel) >= 1, what="process B to subscribe to Redis")
        chat = start_chat_over_api(web_a)
        assert inbound(web_a, A, chat["proxy_number"], "across processes", "XPROC-1").status_code == 204
        mid = message_id(database_url, "XPROC-1")
        got = client.wait_for(lambda _e, data: mentions(data, mid))
        assert got is not None, f"no event for message {mid} reached process B: {client.events}"
    finally:
        client.close()


def test_without_redis_relays_continue_and_events_resume_when_it_returns(
    tmp_path, database_url, throwaway_redis, start_web
):
    channel = "smsproxy-degrade"
    cookie = setup_db(tmp_path, database_url)
    env = base_env(database_url, SOCKETIO_MESSAGE_QUEUE=throwaway_redis.url, SOCKETIO_CHANNEL=channel)
    web_a = start_web("web-a", env)
    web_b = start_web("web-b", {**env, "OUTBOX_WORKER": "false"})
    client = LiveClient(web_b.url, cookie).connect()
    try:
        wait_until(lambda: subscribers(throwaway_redis.url, channel) >= 1, what="process B to subscribe")
        chat = start_chat_over_api(web_a)

        throwaway_redis.stop()
        assert inbound(web_a, A, chat["proxy_number"], "while redis is down", "DOWN-1").status_code == 204
        relay = (
            "SELECT m.status FROM messages m JOIN messages s ON m.source_id = s.id"
            " WHERE s.provider_id = 'DOWN-1'"
        )
        wait_until(
            lambda: scalar(database_url, relay) == "submitted", what="the relay to be sent without Redis"
        )
        # the dashboard's truth is the database: a re-fetch from process B shows the message
        shown = requests.get(
            f"{web_b.url}/api/chats/{chat['id']}",
            headers={"Authorization": f"Bearer {API_TOKEN}"},
            timeout=10,
        ).json()
        assert any(m["text"] == "while redis is down" for m in shown["messages"])

        throwaway_redis.start()
        wait_until(
            lambda: subscribers(throwaway_redis.url, channel) >= 1,
            timeout=90,
            what="process B to resubscribe after Redis returned",
        )
        assert inbound(web_a, A, chat["proxy_number"], "redis is back", "UP-1").status_code == 204
        mid = message_id(database_url, "UP-1")
        assert client.wait_for(lambda _e, data: mentions(data, mid)) is not None, client.events
    finally:
        client.close()
