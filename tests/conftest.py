"""Shared fixtures: an app on a fresh database per test, clients, API headers, the simulated gateway.

Database backends: every test that uses the `app` fixture (or `database_url`) runs once per backend,
`[sqlite]` and `[postgres]`. Choose with `--db sqlite|postgres|both` (default both, or env TEST_DB).
- sqlite: a fresh file in the test's tmp_path.
- postgres: a fresh schema in database `test` on 127.0.0.1:5432 (TEST_POSTGRES_URL), named after this run
  (`t<pid>_<random>_<n>`) and dropped after the test, so parallel runs never see each other.
Mark a test `@pytest.mark.sqlite_only` (or `browser`) to run it on SQLite alone.

Servers (PostgreSQL, Redis): a test that needs one skips with a one-line reason when it is unreachable,
and fails instead under CI (`CI=true`), where a missing server is a broken setup.

Area-specific fixtures live in the conftest.py of a test sub-folder.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from flask import Flask, g

from webapp import create_app, prepare_database
from webapp.extensions import db

API_TOKEN = "test-token-0123456789abcdef0123456789"
PROXIES = ["+447700900001", "+447700900002", "+447700900003"]
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RUN_ID = f"t{os.getpid()}_{secrets.token_hex(3)}"
_schema_numbers = itertools.count(1)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def reachable(url: str, default_port: int) -> str | None:
    """None when a TCP connection to the URL's host:port opens, else why not."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=2):
            return None
    except OSError as exc:
        return f"{host}:{port} unreachable ({exc.strerror or exc})"


def require_server(name: str, url: str, default_port: int) -> None:
    """Skip (one line) when the server is down; under CI=true, fail instead."""
    why = reachable(url, default_port)
    if why is None:
        return
    message = f"{name} at {why}"
    if in_ci():
        pytest.fail(f"{message}: CI=true requires it", pytrace=False)
    pytest.skip(message)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        default=os.environ.get("TEST_DB", "both"),
        choices=["sqlite", "postgres", "both"],
        help="database backend(s) for tests that use the app (default: both; env TEST_DB)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: run on SQLite only, not once per database backend")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_backend" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("sqlite_only") or metafunc.definition.get_closest_marker(
        "browser"
    ):
        backends = ["sqlite"]
    else:
        choice = metafunc.config.getoption("--db")
        backends = ["sqlite", "postgres"] if choice == "both" else [choice]
    marks = {"postgres": [pytest.mark.postgres]}
    metafunc.parametrize(
        "db_backend",
        [pytest.param(b, id=b, marks=marks.get(b, [])) for b in backends],
        indirect=True,
    )


@pytest.fixture
def db_backend(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "sqlite")


def postgres_admin():
    from sqlalchemy import create_engine

    return create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})


def schema_url(schema: str) -> str:
    """POSTGRES_URL with every connection's search_path set to `schema`."""
    sep = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{sep}options={quote(f'-csearch_path={schema}')}"


_swept = False


def _sweep_dead_runs(admin) -> None:
    """Drop schemas left by test runs (or benchmarks) whose process no longer exists (killed runs)."""
    import re

    from sqlalchemy import text

    with admin.connect() as conn:
        names = conn.execute(text("SELECT schema_name FROM information_schema.schemata")).scalars().all()
        for name in names:
            m = re.fullmatch(r"(?:t|bench_)(\d+)_[0-9a-f]{6}(?:_\d+)?", name)
            if m and not os.path.exists(f"/proc/{m.group(1)}"):
                conn.execute(text("SET lock_timeout = '2s'"))
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))


@pytest.fixture
def postgres_schema() -> Iterator[str]:
    """A fresh, empty PostgreSQL schema for this test, dropped afterwards. Yields its URL."""
    global _swept
    require_server("PostgreSQL", POSTGRES_URL, 5432)
    from sqlalchemy import text

    schema = f"{RUN_ID}_{next(_schema_numbers)}"
    admin = postgres_admin()
    if not _swept:
        _swept = True
        with contextlib.suppress(Exception):  # hygiene only: never fail a test for it
            _sweep_dead_runs(admin)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield schema_url(schema)
    finally:
        with admin.connect() as conn:
            conn.execute(text("SET lock_timeout = '10s'"))
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def database_url(db_backend: str, tmp_path, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database of the test's backend."""
    if db_backend == "postgres":
        return request.getfixturevalue("postgres_schema")
    return f"sqlite:///{tmp_path / 'test.db'}"


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
def app(tmp_path, database_url, app_overrides) -> Iterator[Flask]:
    cfg = app_config(tmp_path, **{"SQLALCHEMY_DATABASE_URI": database_url, **app_overrides})
    application = create_app(cfg)
    prepare_database(application)

    def _fresh_g() -> None:
        # The test body holds an app context open, and test-client requests reuse it, so `g` would carry
        # one request's CSRF token and signed-in user into the next. A server gives each request its own.
        for key in ("csrf_token", "_login_user"):
            g.pop(key, None)

    application.before_request_funcs.setdefault(None, []).insert(0, _fresh_g)
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


@pytest.fixture
def redis_url() -> str:
    """The Redis server's URL (skips, or fails under CI, when it is unreachable)."""
    require_server("Redis", REDIS_URL, 6379)
    return REDIS_URL
