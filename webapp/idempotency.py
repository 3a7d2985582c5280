"""Safe retries for the JSON API: with an `Idempotency-Key` header a POST is carried out once.

Put `@idempotent` under the route decorator of every POST view of the API (api.py; tests/test_idempotency.py
fails for one without it). Then, for one key:

- the first request claims the key (a row in `idempotency_keys`, committed at once), runs, and its response
  (status and body) is stored with the key. The key's `committed_at` is written inside the same transaction
  as the view's own work (a `before_commit` hook), so the work and the mark commit together or not at all;
- the same key with the same request (method, path and body) replays the stored response, with
  `Idempotent-Replayed: true`, and does nothing again. A retry that arrives while the first is still running
  waits for it (up to WAIT_SECONDS) and then replays, so concurrent duplicates create one chat;
- the same key with a different request answers 422;
- a 5xx response from a request that committed nothing frees the key, so a retry runs again;
- a first request that died before committing anything leaves a claim that a retry takes over after
  STALE_SECONDS; one that committed its work but died before its response was stored answers 409 saying so
  (the work is done: look its result up, e.g. `GET /api/chats?reference=...`).
Keys are kept IDEMPOTENCY_KEY_HOURS (at least 24 h), then deleted by a job (`purge_keys`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from flask import Request, Response, current_app, make_response, request
from sqlalchemy import delete, event, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .database import begin_write
from .extensions import db
from .models import IdempotencyKey, utcnow
from .services.errors import Conflict, InvalidInput, ServiceError

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
MAX_KEY = 255
WAIT_SECONDS = 10.0  # a duplicate waits this long for the first request to finish
STALE_SECONDS = 60.0  # a claim this old without committed work belongs to a request that died
POLL_SECONDS = 0.05
_MARK = "idempotency_key_id"
_keys = IdempotencyKey.__table__


class KeyReused(ServiceError):
    status = 422


def _mark_committed(session: Session) -> None:
    """before_commit: the view's work is committing; note it on the key in the same transaction."""
    key_id = session.info.get(_MARK)
    if key_id is not None:
        session.connection().execute(
            update(_keys).where(_keys.c.id == key_id, _keys.c.committed_at.is_(None)).values(committed_at=utcnow())
        )


def install() -> None:
    if not event.contains(Session, "before_commit", _mark_committed):
        event.listen(Session, "before_commit", _mark_committed)


def fingerprint(req: Request) -> str:
    """What makes two requests "the same": method, path and body (JSON compared by value, forms by fields)."""
    h = hashlib.sha256(f"{req.method} {req.path}\n".encode())
    body: Any = req.get_json(silent=True) if req.is_json else None
    if body is not None:
        h.update(b"json:" + json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())
    elif req.form:
        h.update(b"form:" + urlencode(sorted(req.form.items(multi=True))).encode())
    else:
        h.update(b"raw:" + req.get_data(cache=True))
    return h.hexdigest()


def _valid_key(raw: str) -> str:
    key = raw.strip()
    if not key or len(key) > MAX_KEY or any(not 0x21 <= ord(ch) <= 0x7E for ch in key):
        raise InvalidInput(
            f"{HEADER} must be 1 to {MAX_KEY} visible ASCII characters (a UUID is a good choice)", field=HEADER
        )
    return key


def _replay(row: Any) -> Response:
    resp = current_app.response_class(row.response_body, status=row.response_status, mimetype="application/json")
    resp.headers[REPLAYED] = "true"
    return resp


def _take_over(row: Any, now: datetime) -> bool:
    begin_write()
    taken = db.session.execute(
        update(_keys)
        .where(_keys.c.id == row.id, _keys.c.created_at == row.created_at, _keys.c.committed_at.is_(None),
               _keys.c.response_status.is_(None))
        .values(created_at=now)
    ).rowcount
    db.session.commit()
    return taken == 1


def claim(key: str, print_: str) -> int | Response:
    """The key's row id when this request may run; the stored response when it already ran."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        row = db.session.execute(select(_keys).where(_keys.c.key == key)).first()
        db.session.rollback()
        if row is None:
            try:
                begin_write()
                key_id = db.session.execute(
                    insert(_keys).values(key=key, fingerprint=print_, created_at=utcnow()).returning(_keys.c.id)
                ).scalar_one()
                db.session.commit()
                return key_id
            except IntegrityError:  # a duplicate claimed it first
                db.session.rollback()
                continue
        if row.fingerprint != print_:
            raise KeyReused(f"this {HEADER} was already used for a different request; use a new key", field=HEADER)
        if row.response_status is not None:
            return _replay(row)
        now = utcnow()
        stale = now - timedelta(seconds=STALE_SECONDS)
        if row.committed_at is None and row.created_at < stale and _take_over(row, now):
            log.warning("idempotency key %d: the first request stopped before doing anything; running it again",
                        row.id)
            return row.id
        if row.committed_at is not None and row.committed_at < stale:
            raise Conflict(
                f"the first request with this {HEADER} was carried out, but its response was not recorded (the "
                "server stopped in between); look its result up instead (e.g. GET /api/chats?reference=...)",
                field=HEADER,
            )
        if time.monotonic() >= deadline:
            raise Conflict(f"a request with this {HEADER} is still in progress; retry in a moment", field=HEADER)
        time.sleep(POLL_SECONDS)


def _finish(key_id: int, resp: Response) -> None:
    """Store the response with the key; a 5xx after no committed work frees the key instead."""
    try:
        begin_write()
        if resp.status_code >= 500:
            freed = db.session.execute(
                delete(_keys).where(_keys.c.id == key_id, _keys.c.committed_at.is_(None))
            ).rowcount
            if freed:
                db.session.commit()
                return
        db.session.execute(
            update(_keys).where(_keys.c.id == key_id)
            .values(response_status=resp.status_code, response_body=resp.get_data(as_text=True))
        )
        db.session.commit()
    except Exception as exc:  # the response still goes out; a retry finds the claim (see the module doc)
        db.session.rollback()
        log.error("idempotency key %d: response not stored (%s)", key_id, type(exc).__name__)


def _release(key_id: int) -> None:
    try:
        begin_write()
        db.session.execute(delete(_keys).where(_keys.c.id == key_id, _keys.c.committed_at.is_(None)))
        db.session.commit()
    except Exception:
        db.session.rollback()


def idempotent(view: Callable[..., Any]) -> Callable[..., Any]:
    """Make a POST view safe to retry with an Idempotency-Key (without the header it runs as before)."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        raw = request.headers.get(HEADER)
        if raw is None:
            return view(*args, **kwargs)
        claimed = claim(_valid_key(raw), fingerprint(request))
        if isinstance(claimed, Response):
            return claimed
        db.session.info[_MARK] = claimed
        try:
            try:
                resp = make_response(view(*args, **kwargs))
            except Exception as exc:
                db.session.rollback()  # whatever the view left half-done is not part of its answer
                db.session.info.pop(_MARK, None)
                try:
                    rv = current_app.handle_user_exception(exc)
                except Exception:
                    _release(claimed)
                    raise
                resp = make_response(rv)
        finally:
            db.session.info.pop(_MARK, None)
        db.session.rollback()  # reads the view left open; its writes are committed
        _finish(claimed, resp)
        return resp

    wrapper.idempotent = True  # type: ignore[attr-defined]  (tests check every POST route has it)
    return wrapper


def purge_keys(now: datetime | None = None, batch: int = 1000) -> int:
    """Delete keys older than IDEMPOTENCY_KEY_HOURS (a scheduled job); returns how many."""
    cutoff = (now or utcnow()) - timedelta(hours=float(current_app.config["IDEMPOTENCY_KEY_HOURS"]))
    ids = list(db.session.scalars(select(_keys.c.id).where(_keys.c.created_at < cutoff).limit(batch)))
    db.session.rollback()
    if not ids:
        return 0
    begin_write()
    gone = db.session.execute(delete(_keys).where(_keys.c.id.in_(ids))).rowcount
    db.session.commit()
    return gone
