"""Data exposure: database errors never log statement parameters (numbers, message text); the instance folder,
its secret key and SQLite files are readable by the app's user only, from the moment they exist.

Repros from the issue: on PostgreSQL a database error logged the statement parameters; the SQLite files were
created 0644 in a 0755 folder; `instance/secret_key` was briefly 0644.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import DBAPIError

from tests.conftest import app_config
from webapp import ROOT, create_app, prepare_database
from webapp.extensions import db
from webapp.instance import prepare_instance, protect_sqlite, secret_key
from webapp.logs import RedactingFormatter
from webapp.models import Message

NUMBER, BODY = "+447700900111", "my PIN is 4321"


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_database_errors_never_carry_the_statement_parameters(app, caplog):
    assert db.engine.hide_parameters is True
    bad = {"direction": "in", "kind": "sms", "from_number": NUMBER, "to_number": "+447700900001",
           "text": BODY, "status": "received", "provider_id": "DUP"}
    db.session.execute(insert(Message).values(**bad))
    db.session.commit()
    with pytest.raises(DBAPIError) as failed:  # the same messageId again: a unique violation
        db.session.execute(insert(Message).values(**bad))
    db.session.rollback()
    text = str(failed.value)
    assert BODY not in text and "parameters hidden" in text
    # PostgreSQL's own detail names the key's value; the log formatter masks numbers in it
    line = RedactingFormatter("%(message)s").format(
        logging.LogRecord("webapp", logging.ERROR, __file__, 1, text + " Key (real_number)=(+447700900111)", None, None)
    )
    assert NUMBER not in line and "+44••••••0111" in line


def test_a_failed_webhook_logs_neither_numbers_nor_text(app, client, caplog, monkeypatch):
    from webapp.services import inbound

    def explode(*args, **kwargs):
        raise RuntimeError(f"simulated failure while storing {BODY} from {NUMBER}")

    monkeypatch.setattr(inbound, "try_relay", explode)
    caplog.set_level(logging.ERROR)
    resp = client.post("/webhooks/inbound-sms", data={"msisdn": NUMBER[1:], "to": "447700900001", "text": BODY})
    assert resp.status_code == 503
    formatted = "\n".join(RedactingFormatter("%(message)s").format(r) for r in caplog.records)
    assert NUMBER not in formatted and NUMBER[1:] not in formatted


def test_the_instance_folder_is_0700_and_an_old_0755_one_is_narrowed(tmp_path):
    fresh = tmp_path / "fresh"
    prepare_instance(fresh)
    assert mode(fresh) == 0o700
    old = tmp_path / "old"
    old.mkdir(mode=0o755)
    os.chmod(old, 0o755)
    prepare_instance(old)
    assert mode(old) == 0o700
    create_app(app_config(tmp_path))
    assert mode(ROOT / "instance") == 0o700  # the app's own instance folder


def test_the_secret_key_is_created_0600_whatever_the_umask(tmp_path):
    # in a child process with umask 0 (the worst case): the file never exists with a wider mode
    code = (
        "import os, sys, stat; from pathlib import Path; os.umask(0);"
        "from webapp.instance import secret_key; d = Path(sys.argv[1]); key = secret_key(d);"
        "print(oct(stat.S_IMODE(os.stat(d / 'secret_key').st_mode)), len(key))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True).stdout.split()
    assert out == ["0o600", "64"]
    assert secret_key(tmp_path) == secret_key(tmp_path)  # kept, not regenerated
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "secret_key"]
    assert leftovers == []


def test_sqlite_files_are_0600_including_wal_and_shm(tmp_path):
    url = f"sqlite:///{tmp_path / 'data.db'}"
    protect_sqlite(url)
    assert mode(tmp_path / "data.db") == 0o600
    app = create_app(app_config(tmp_path, SQLALCHEMY_DATABASE_URI=url))
    prepare_database(app)
    with app.app_context():
        with db.engine.connect() as conn:  # WAL mode: -wal and -shm exist while a connection is open
            conn.exec_driver_sql("SELECT 1")
            for name in ("data.db", "data.db-wal", "data.db-shm"):
                assert mode(tmp_path / name) == 0o600, name
        db.engine.dispose()


def test_an_existing_world_readable_database_is_narrowed(tmp_path):
    path = tmp_path / "old.db"
    path.touch()
    os.chmod(path, 0o644)
    protect_sqlite(f"sqlite:///{path}")
    assert mode(path) == 0o600
