"""Shared fixtures: an app on a fresh database per test, clients, API headers, the simulated gateway.

Area-specific fixtures live in the conftest.py of a test sub-folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from webapp import create_app, prepare_database
from webapp.extensions import db

API_TOKEN = "test-token-123"
PROXIES = ["+447700900001", "+447700900002", "+447700900003"]


def app_config(tmp_path, **overrides: Any) -> dict[str, Any]:
    cfg = {
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'test.db'}",
        "API_TOKEN": API_TOKEN,
        "PROXY_NUMBERS": ",".join(PROXIES),
        "DEFAULT_REGION": "GB",
        "SMS_GATEWAY": "simulated",
        "WTF_CSRF_ENABLED": True,
    }
    cfg.update(overrides)
    return cfg


@pytest.fixture
def app_overrides() -> dict[str, Any]:
    """Override in a test module to change the app's configuration."""
    return {}


@pytest.fixture
def app(tmp_path, app_overrides) -> Iterator[Flask]:
    application = create_app(app_config(tmp_path, **app_overrides))
    prepare_database(application)
    with application.app_context():
        yield application
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app: Flask):
    return app.test_client()


@pytest.fixture
def api_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def gateway(app: Flask):
    """The simulated gateway the app sends through; `.sent` lists what went out."""
    return app.extensions["sms_gateway"]
