"""The Python client shown in the README works against a served app (the code block itself is run here)."""

from __future__ import annotations

import re
import threading
from pathlib import Path

from sqlalchemy import func, select
from werkzeug.serving import make_server

from tests.conftest import API_TOKEN
from webapp.extensions import db
from webapp.models import Chat

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_client_pairs_finds_and_ends_a_chat_once(app):
    section = README.read_text().split("A client in Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        code = code.replace("http://localhost:3000/api", f"http://127.0.0.1:{server.server_port}/api")
        code = code.replace("dev-token-change-me", API_TOKEN)
        namespace: dict = {}
        exec(compile(code, str(README), "exec"), namespace)
        again = namespace["start_chat"]("+447700900111", "07700 900222", ride="ride-42")  # a retry
        assert again == namespace["chat"]
    finally:
        server.shutdown()
    assert db.session.scalar(select(func.count()).select_from(Chat)) == 1
    assert db.session.scalar(select(Chat.status)) == "ended"
