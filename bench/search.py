"""Search latency at 100,000 chats (issue 11): the dashboard's search, answered from the search index.

    python -m bench.search [--databases sqlite,postgres] [--chats 100000] [--texts 2] [--reps 40]

Per database: a fresh database at the newest migration (so the search index exists), then 100,000 chats (70%
ended, 30% active; labels from 300 first names; references "ride-<n>") and, per chat, `--texts` texts from
its customer plus their relays (relays are not indexed), all inserted through the ordinary tables, so the
triggers (SQLite) and index maintenance (PostgreSQL) run as in production; the seeding rate is printed. Then
each kind of query runs `--reps` times with a different value each time, through `search.find_chats()` (the
function the dashboard calls: candidates from the index, counts per tab, the first page, its rows), and the
p50/p95 latency is printed ("1000+": the query met search.CAP). For contrast, the LIKE scans a search without
an index would do are timed a few times. Last, on a database of its own, what the index adds to inserting a
message (bulk inserts of 2,000, best of 3, with and without the index). Numbers are never printed: a query is
described by its shape.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert, text

from .common import app_for, machine, open_database, percentile, table, workdir

NAMES = [f"{a}{b}" for a in ("Al", "Be", "Ca", "Da", "El", "Fa", "Gi", "Ha", "Io", "Ju", "Ka", "Lu", "Mo", "Ni", "Ol")
         for b in ("ex", "na", "ri", "to", "mo", "la", "sa", "vi", "do", "ne", "ko", "bi", "zu", "pe", "ra", "gu",
                   "ty", "wo", "xi", "qu")]  # 300 first names
PHRASES = [
    "I am outside the station",
    "Running five minutes late, sorry",
    "Where are you exactly?",
    "Hello? Are you still coming?",
    "Leave it with the neighbour please",
    "At the corner by the pharmacy",
    "Can you call the front desk",
    "Thanks, see you soon",
]
PROXIES = [f"+4477009{n:05d}" for n in range(1, 21)]


# Unique, evenly spread digits (like real numbers' endings): i times a prime, modulo 10^9, is a permutation.
def a_number(i: int) -> str:
    return f"+447{(i * 7919 + 1) % 10**9:09d}"


def b_number(i: int) -> str:
    return f"+447{(i * 104729 + 2) % 10**9:09d}"


def seed(url: str, chats: int, texts: int) -> tuple[float, float]:
    """Seconds to insert the chats, and the messages."""
    from webapp.extensions import db
    from webapp.models import Chat, Message, utcnow

    app = app_for(url, PROXY_NUMBERS=",".join(PROXIES))
    rng = random.Random(11)
    with app.app_context():
        now = utcnow()
        t0 = time.perf_counter()
        batch = 5000
        for first in range(1, chats + 1, batch):
            rows = []
            for i in range(first, min(chats + 1, first + batch)):
                ended = rng.random() < 0.7
                at = now - timedelta(minutes=chats - i)
                rows.append(
                    {
                        "a_number": a_number(i),
                        "b_number": b_number(i),
                        "proxy_number": PROXIES[i % len(PROXIES)],
                        "a_label": "Customer " + rng.choice(NAMES),
                        "b_label": "Driver " + rng.choice(NAMES),
                        "reference": f"ride-{i}",
                        "status": "ended" if ended else "active",
                        "ended_reason": "operator" if ended else None,
                        "ended_at": at if ended else None,
                        "created_at": at,
                        "last_activity_at": at,
                        "unread": 0,
                    }
                )
            db.session.execute(insert(Chat), rows)
            db.session.commit()
        t_chats = time.perf_counter() - t0
        t0 = time.perf_counter()
        n = 0
        rows = []
        for i in range(1, chats + 1):
            for k in range(texts):
                n += 1
                body = f"{rng.choice(PHRASES)} (bay {i * 10 + k}x)"  # "bay 123450x": a word in one text
                common = {"chat_id": i, "text": body, "created_at": now, "updated_at": now}
                rows.append({**common, "direction": "in", "kind": "sms", "side": "a", "from_number": a_number(i),
                             "to_number": PROXIES[i % len(PROXIES)], "status": "received",
                             "provider_id": f"BENCH{n:09d}", "attempts": 0})
                rows.append({**common, "direction": "out", "kind": "relay", "side": "b",
                             "from_number": PROXIES[i % len(PROXIES)], "to_number": b_number(i),
                             "status": "delivered", "attempts": 1})
            if len(rows) >= 10_000:
                db.session.execute(insert(Message), rows)
                db.session.commit()
                rows = []
        if rows:
            db.session.execute(insert(Message), rows)
            db.session.commit()
        t_messages = time.perf_counter() - t0
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
        else:
            db.session.execute(text("ANALYZE"))
            db.session.commit()
        db.session.remove()
        db.engine.dispose()
    return t_chats, t_messages


def spaced(number: str) -> str:
    return f"+44 {number[3:7]} {number[7:]}"


def queries(chats: int, texts: int, reps: int) -> dict[str, list[str]]:
    rng = random.Random(12)
    pick = lambda: rng.randrange(1, chats + 1)  # noqa: E731
    return {
        "reference (ride-N)": [f"ride-{pick()}" for _ in range(reps)],
        "a label word (300 names)": [rng.choice(NAMES) for _ in range(reps)],
        "label + reference words": [f"{rng.choice(NAMES)} ride" for _ in range(reps)],
        "full number, national format": [f"0{a_number(pick())[3:]}" for _ in range(reps)],
        "full number, +44 with spaces": [spaced(a_number(pick())) for _ in range(reps)],
        "last 6 digits of a number": [a_number(pick())[-6:] for _ in range(reps)],
        "chat id (#N)": [f"#{pick()}" for _ in range(reps)],
        "a word in one text only": [f"{pick() * 10 + rng.randrange(texts)}x" for _ in range(reps)],
        "a phrase (1 in 8 texts)": [rng.choice(PHRASES).split(",")[0] for _ in range(reps)],
        "a common word (pharmacy)": ["pharmacy" for _ in range(reps)],
    }


def run(url: str, chats: int, texts: int, reps: int) -> list[list[str]]:
    from webapp import search
    from webapp.extensions import db

    app = app_for(url, PROXY_NUMBERS=",".join(PROXIES))
    rows = []
    with app.app_context():
        search.find_chats("warm up")
        for kind, values in queries(chats, texts, reps).items():
            lat, totals = [], []
            for q in values:
                t0 = time.perf_counter()
                result = search.find_chats(q)
                lat.append((time.perf_counter() - t0) * 1000)
                totals.append(f"{result.total}{'+' if result.capped else ''}")
                db.session.rollback()
            shown = sorted(set(totals), key=lambda t: int(t.rstrip("+")))
            rows.append([kind, f"{percentile(lat, 50):.1f}", f"{percentile(lat, 95):.1f}",
                         shown[0] if len(shown) == 1 else f"{shown[0]} to {shown[-1]}"])
        # what the same questions cost without an index: LIKE over the tables (a few runs: they are slow)
        for kind, sql, value in (
            ("LIKE scan: labels/reference (before)", "SELECT count(*) FROM chats WHERE lower(a_label) LIKE :v "
             "OR lower(b_label) LIKE :v OR lower(reference) LIKE :v", "%ride-4242%"),
            ("LIKE scan: message texts", "SELECT count(DISTINCT chat_id) FROM messages WHERE lower(text) LIKE :v",
             "%42421x%"),
        ):
            lat = []
            for _ in range(5):
                t0 = time.perf_counter()
                db.session.execute(text(sql), {"v": value}).scalar()
                lat.append((time.perf_counter() - t0) * 1000)
            rows.append([kind, f"{percentile(lat, 50):.1f}", f"{percentile(lat, 95):.1f}", "(5 runs)"])
        db.session.remove()
        db.engine.dispose()
    return rows


def insert_cost(url: str, n: int = 20_000) -> tuple[float, float]:
    """Microseconds per inserted message (half of them indexed: texts and their relays) with the search index
    and after dropping it (on a database of its own: the index is gone afterwards). Best of 3 runs."""
    from webapp import fulltext
    from webapp.extensions import db
    from webapp.models import Chat, Message, utcnow

    app = app_for(url)
    result = []
    with app.app_context():
        now = utcnow()
        chat_id = db.session.execute(
            insert(Chat).returning(Chat.id),
            [{"a_number": a_number(1), "b_number": b_number(1), "proxy_number": PROXIES[0], "status": "active",
              "created_at": now, "last_activity_at": now, "unread": 0}],
        ).scalar()
        db.session.commit()
        for _ in ("with", "without"):
            best = float("inf")
            for rep in range(3):
                rows = [{"chat_id": chat_id, "direction": "in" if i % 2 == 0 else "out",
                         "kind": "sms" if i % 2 == 0 else "relay", "side": "a", "from_number": a_number(1),
                         "to_number": PROXIES[0], "text": f"Running five minutes late, sorry ({rep} {i})",
                         "status": "received", "attempts": 0, "created_at": now, "updated_at": now}
                        for i in range(n)]
                t0 = time.perf_counter()
                for k in range(0, n, 2000):
                    db.session.execute(insert(Message), rows[k : k + 2000])
                    db.session.commit()
                best = min(best, time.perf_counter() - t0)
            result.append(best / n * 1e6)
            with db.engine.begin() as conn:
                fulltext.drop(conn)
        db.session.remove()
        db.engine.dispose()
    return result[0], result[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--chats", type=int, default=100_000)
    parser.add_argument("--texts", type=int, default=2, help="texts per chat from its customer (each also relayed)")
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--keep", action="store_true", help="keep the seeded databases (prints where) to look at plans")
    args = parser.parse_args()
    print(machine())
    print(f"chats={args.chats} texts/chat={args.texts} (+ as many relays) reps/query={args.reps}")
    for kind in args.databases.split(","):
        kept = contextlib.nullcontext(Path(tempfile.mkdtemp(prefix="bench-search-kept-")))
        with kept if args.keep else workdir("bench-search-") as tmp:
            database = open_database(kind, tmp)
            try:
                t_chats, t_messages = seed(database.url, args.chats, args.texts)
                messages = args.chats * args.texts * 2
                print(f"\n{kind}: seeded {args.chats:,} chats in {t_chats:.1f} s, {messages:,} messages in "
                      f"{t_messages:.1f} s ({messages / t_messages:,.0f} rows/s, index maintained on insert)")
                print(table(["query", "p50 ms", "p95 ms", "matches"], run(database.url, args.chats, args.texts,
                                                                          args.reps)))
            finally:
                if args.keep:
                    print(f"kept: {database.url} (remove it yourself)")
                else:
                    database.close()
        with workdir("bench-search-cost-") as tmp:
            database = open_database(kind, tmp)
            try:
                with_index, without = insert_cost(database.url)
                print(f"{kind}: inserting a message costs {with_index:.1f} us with the search index, {without:.1f} us "
                      f"without (+{with_index - without:.1f} us; half the rows are indexed texts, half relays)")
            finally:
                database.close()


if __name__ == "__main__":
    main()
