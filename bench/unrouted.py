"""Unrouted texts at scale: the nav badge's count and an unrouted text's chat link, against the table sizes.

    python -m bench.unrouted [--db sqlite,postgres] [--chats 100000] [--texts 10] [--unrouted 5000]

For each database: bulk insert <chats> ended chats (one person, +447100000000, in 1,000 of them on the
proxy number, so a busy sender has a long history) with <texts> routed texts each, and <unrouted> unrouted
texts of which 1% are unhandled. Then time (median of 50 runs, in-process) `count_unhandled_unrouted()` (the
nav badge, rendered on every page) and `last_chat_of()` (run once per unrouted text on arrival), and print each
query's plan, so the index is seen doing the work.
"""

from __future__ import annotations

import argparse
import statistics
import time

from .common import PROXY, app_for, machine, open_database, table, workdir

BUSY = "+447100000000"


def seed(url: str, chats: int, texts: int, unrouted: int) -> None:
    from sqlalchemy import insert, select

    from webapp.extensions import db
    from webapp.models import Chat, Message, utcnow

    app = app_for(url)
    with app.app_context():
        now = utcnow()
        for first in range(0, chats, 5000):
            rows = [
                {"a_number": BUSY if i % (chats // 1000 or 1) == 0 else f"+4471{i:06d}55",
                 "b_number": f"+4472{i:06d}66", "proxy_number": PROXY, "status": "ended",
                 "ended_reason": "expired", "created_at": now, "ended_at": now, "last_activity_at": now,
                 "unread": 0}
                for i in range(first, min(chats, first + 5000))
            ]
            db.session.execute(insert(Chat), rows)
            db.session.commit()
        first_id = db.session.scalar(select(Chat.id).order_by(Chat.id).limit(1))
        batch: list[dict] = []
        for i in range(chats * texts):
            batch.append({"chat_id": first_id + i // texts, "direction": "in", "kind": "sms", "side": "a",
                          "from_number": f"+4471{i // texts:06d}55", "to_number": PROXY, "text": "hello",
                          "status": "received", "created_at": now, "updated_at": now})
            if len(batch) == 10000:
                db.session.execute(insert(Message), batch)
                db.session.commit()
                batch = []
        for i in range(unrouted):
            handled = i % 100 != 0
            batch.append({"chat_id": None, "direction": "in", "kind": "sms", "from_number": f"+4479{i:08d}",
                          "to_number": PROXY, "text": "anyone?", "status": "unrouted", "created_at": now,
                          "updated_at": now, "handled_at": now if handled else None,
                          "handled_by": "operator:bench" if handled else None})
            if len(batch) == 10000:
                db.session.execute(insert(Message), batch)
                db.session.commit()
                batch = []
        if batch:
            db.session.execute(insert(Message), batch)
            db.session.commit()
        if db.engine.dialect.name == "postgresql":
            db.session.execute(db.text("ANALYZE"))
            db.session.commit()
        else:
            db.session.execute(db.text("ANALYZE"))
            db.session.commit()
        db.session.remove()
        db.engine.dispose()


def measure(url: str, runs: int = 50) -> tuple[list, list[str]]:
    from sqlalchemy import func, select

    from webapp.extensions import db
    from webapp.models import Chat, Message
    from webapp.queries import count_unhandled_unrouted
    from webapp.services.unrouted import last_chat_of

    app = app_for(url)
    with app.app_context():
        def median_ms(fn) -> tuple[float, object]:
            times, value = [], None
            for _ in range(runs):
                start = time.perf_counter()
                value = fn()
                times.append((time.perf_counter() - start) * 1000)
            return statistics.median(times), value

        badge_ms, badge = median_ms(count_unhandled_unrouted)
        link_ms, link = median_ms(lambda: last_chat_of(BUSY, PROXY))
        sizes = (db.session.scalar(select(func.count()).select_from(Chat)),
                 db.session.scalar(select(func.count()).select_from(Message)))
        sqlite = db.engine.dialect.name == "sqlite"
        explain = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ANALYZE "
        plans = []
        for name, query in (
            ("badge", select(func.count()).select_from(Message).where(
                Message.chat_id.is_(None), Message.handled_at.is_(None), Message.direction == "in")),
            ("link (person a)", select(Chat.id).where(Chat.a_number == BUSY, Chat.proxy_number == PROXY)
             .order_by(Chat.id.desc()).limit(1)),
        ):
            sql = str(query.compile(db.engine, compile_kwargs={"literal_binds": True}))
            rows = db.session.connection().exec_driver_sql(explain + sql).all()
            plans.append(f"{name}: " + " / ".join(str(r[-1] if sqlite else r[0]) for r in rows))
        db.session.remove()
        db.engine.dispose()
    return [sizes[0], sizes[1], badge, f"{badge_ms:.3f}", link, f"{link_ms:.3f}"], plans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--chats", type=int, default=100_000)
    parser.add_argument("--texts", type=int, default=10)
    parser.add_argument("--unrouted", type=int, default=5000)
    args = parser.parse_args()
    print(machine())
    rows, all_plans = [], []
    for kind in args.db.split(","):
        with workdir("bench-unrouted-") as wd:
            database = open_database(kind, wd)
            try:
                seed(database.url, args.chats, args.texts, args.unrouted)
                row, plans = measure(database.url)
            finally:
                database.close()
        rows.append([kind, *row])
        all_plans += [f"{kind} {p}" for p in plans]
    print(table(["db", "chats", "messages", "unhandled", "badge count ms", "link", "link lookup ms"], rows))
    print("\n".join(all_plans))


if __name__ == "__main__":
    main()
