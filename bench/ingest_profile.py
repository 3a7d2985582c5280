"""Where the CPU of one webhook goes, in-process, one thread (no HTTP server, no contention), and what a
leaner store would buy. Prints CPU microseconds per webhook for each layer:

    python -m bench.ingest_profile [--database sqlite|postgres] [--n 2000]

- `full request`: Flask test client -> /webhooks/inbound-sms (routing, form parsing, service, commit, live).
- `receive_sms()`: the service alone (parse numbers, dedupe, route, store + relay through the ORM, commit).
- `parse_inbound()`: number parsing and validation alone (phonenumbers).
- `lean store`: the same rows written with four Core statements (INSERT ... ON CONFLICT DO NOTHING RETURNING
  for the dedupe, one routing SELECT ... FOR UPDATE, INSERT relay, UPDATE chat) and one commit: a prototype
  to size the gain of a leaner services/inbound.py, not used by the app.
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from pathlib import Path

from .common import app_for, inbound_form, machine, open_database, seed_chats, table, workdir

_STATEMENTS: dict[str, object] = {}


def _statements(dialect: str) -> dict:
    """Core statements built once with bind parameters (no per-call construction or ORM layer)."""
    if dialect in _STATEMENTS:
        return _STATEMENTS[dialect]  # type: ignore[return-value]
    from sqlalchemy import bindparam, select, update
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    from webapp.models import Chat, Message, Route

    m, c, r = Message.__table__, Chat.__table__, Route.__table__
    ins = pg_insert if dialect == "postgresql" else sqlite_insert
    found = {
        "inbound": ins(m).on_conflict_do_nothing(index_elements=["provider_id"]).returning(m.c.id),
        "route": select(c.c.id, c.c.a_number, c.c.b_number)
        .join(r, r.c.chat_id == c.c.id)
        .where(r.c.real_number == bindparam("sender"), r.c.proxy_number == bindparam("proxy"))
        .with_for_update(of=c),
        "link": update(m).where(m.c.id == bindparam("mid")).values(chat_id=bindparam("cid"), side=bindparam("s")),
        "relay": m.insert(),
        "touch": update(c)
        .where(c.c.id == bindparam("cid"))
        .values(last_activity_at=bindparam("now"), unread=c.c.unread + 1),
    }
    _STATEMENTS[dialect] = found
    return found


def lean_store(params: dict) -> int | None:
    from webapp.database import begin_write
    from webapp.extensions import db
    from webapp.models import utcnow
    from webapp.services.inbound import parse_inbound

    sender, proxy, text, provider_id = parse_inbound(params)
    now = utcnow()
    begin_write()
    conn = db.session.connection()
    st = _statements(conn.dialect.name)
    stamp = now  # the table columns keep the UTCDateTime type, which converts per backend
    msg_id = conn.execute(
        st["inbound"],
        {
            "direction": "in",
            "kind": "sms",
            "from_number": sender,
            "to_number": proxy,
            "text": text,
            "status": "received",
            "provider_id": provider_id,
            "attempts": 0,
            "created_at": stamp,
            "updated_at": stamp,
        },
    ).scalar()
    if msg_id is None:
        db.session.rollback()
        return None  # duplicate
    row = conn.execute(st["route"], {"sender": sender, "proxy": proxy}).first()
    if row is None:
        db.session.commit()
        return msg_id
    side, other, to = ("a", "b", row.b_number) if row.a_number == sender else ("b", "a", row.a_number)
    conn.execute(st["link"], {"mid": msg_id, "cid": row.id, "s": side})
    conn.execute(
        st["relay"],
        {
            "direction": "out",
            "kind": "relay",
            "side": other,
            "from_number": proxy,
            "to_number": to,
            "text": text,
            "status": "queued",
            "source_id": msg_id,
            "attempts": 0,
            "next_attempt_at": stamp,
            "chat_id": row.id,
            "created_at": stamp,
            "updated_at": stamp,
        },
    )
    conn.execute(st["touch"], {"cid": row.id, "now": stamp})
    db.session.commit()
    return msg_id


def measure(fn, forms) -> float:
    c0 = time.process_time()
    for f in forms:
        fn(f)
    return (time.process_time() - c0) / len(forms) * 1e6


def run(kind: str, n: int) -> list[list]:
    from webapp import services
    from webapp.extensions import db
    from webapp.services.inbound import parse_inbound

    logging.disable(logging.INFO)
    with workdir("bench-prof-") as wd:
        database = open_database(kind, Path(wd))
        try:
            keys = seed_chats(database.url, 100)
            app = app_for(database.url, TESTING=False)
            client = app.test_client()
            rng = random.Random(3)

            def forms(tag: str) -> list[dict]:
                return [
                    inbound_form(*rng.choice(keys), f"profile {i}", f"{tag}{time.time_ns()}-{i}", signed=False)
                    for i in range(n)
                ]

            warm = forms("W")
            for f in warm[: n // 5]:
                client.post("/webhooks/inbound-sms", data=f)
            rows = []
            full = measure(lambda f: client.post("/webhooks/inbound-sms", data=f), forms("F"))
            with app.app_context():
                service = measure(services.receive_sms, forms("S"))
                parse = measure(parse_inbound, forms("P"))
                lean = measure(lean_store, forms("L"))
                db.session.remove()
                db.engine.dispose()
            rows.append([kind, "full request (test client)", f"{full:.0f}"])
            rows.append([kind, "receive_sms() (ORM)", f"{service:.0f}"])
            rows.append([kind, "  of which parse_inbound()", f"{parse:.0f}"])
            rows.append([kind, "lean store prototype (Core)", f"{lean:.0f}"])
            from vonage import Auth

            from .common import SIG_METHOD, SIG_SECRET

            auth = Auth(api_key="benchkey", signature_secret=SIG_SECRET, signature_method=SIG_METHOD)
            signed = [inbound_form(*rng.choice(keys), f"sig {i}", f"G{i}") for i in range(n)]
            assert auth.check_signature(dict(signed[0]))
            sig = measure(lambda f: auth.check_signature(dict(f)), signed)
            rows.append([kind, "signature check (vonage Auth.check_signature, sha256)", f"{sig:.0f}"])
            return rows
        finally:
            database.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--databases", default="sqlite,postgres")
    p.add_argument("--n", type=int, default=1500)
    a = p.parse_args()
    rows = [r for k in a.databases.split(",") for r in run(k, a.n)]
    print(f"machine: {machine()}")
    print(f"{a.n} webhooks per row, one thread, in-process, relayed to an active chat, unsigned, logging off")
    print(table(["database", "layer", "CPU µs per webhook"], rows))


if __name__ == "__main__":
    main()
