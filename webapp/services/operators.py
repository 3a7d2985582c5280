"""Operator accounts and their sign-in sessions: the use cases behind `flask operators ...` and the admin pages.

A session is a row (`OperatorSession`) whose random key only the browser's cookie holds (we keep its SHA-256).
A request is signed in while that row exists and has not expired and the operator is not disabled, so ending
a session is deleting its row: sign-out ends one, disabling an operator or resetting their password ends all
of theirs, at once, wherever the cookie was copied to. Open sockets are closed too: `live` listens to the events.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from .. import audit, events
from ..database import begin_write
from ..extensions import db
from ..models import Operator, OperatorSession, utcnow
from ..states import Action
from .errors import Conflict, InvalidInput, NotFound

log = logging.getLogger(__name__)

SESSION_KEY = "sk"  # the Flask session field holding the key of the operator's session row
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # hashing is deliberately slow: a megabyte "password" must not cost more than a guess
MAX_NAME = 60
# A hash to check against when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not-a-real-password")


# ------------------------------------------------------------------ accounts


def _clean_name(name: object) -> str:
    name = name.strip() if isinstance(name, str) else ""
    if not name or len(name) > MAX_NAME or any(ch.isspace() or not ch.isprintable() for ch in name):
        raise InvalidInput(f"the name must be 1-{MAX_NAME} characters without spaces", field="name")
    return name


def check_password(password: object) -> str:
    """The password if it meets the rule (MIN_PASSWORD to MAX_PASSWORD characters, no NUL), else InvalidInput.
    The CLI asks for it before the confirmation, the dashboard's forms before anything changes."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise InvalidInput(f"the password must be at least {MIN_PASSWORD} characters", field="password")
    if len(password) > MAX_PASSWORD or "\x00" in password:
        raise InvalidInput(
            f"the password must be at most {MAX_PASSWORD} characters, without NUL", field="password"
        )
    return password


def get_operator(name: str) -> Operator:
    operator = db.session.scalar(select(Operator).where(Operator.name == (name or "").strip()))
    if operator is None:
        raise NotFound(f"no operator named {name!r}", field="name")
    return operator


def list_operators() -> list[Operator]:
    return list(db.session.scalars(select(Operator).order_by(Operator.name)))


def count_operators() -> int:
    return db.session.scalar(select(func.count()).select_from(Operator)) or 0


def create_operator(name: str, password: str, *, admin: bool = False, actor: str | None = None) -> Operator:
    """A new operator account. `actor` (who created it, states.Actor) goes to the audit trail."""
    name = _clean_name(name)
    password = check_password(password)
    if db.session.scalar(select(Operator.id).where(Operator.name == name)) is not None:
        raise Conflict(f"an operator named {name!r} already exists", field="name")
    operator = Operator(name=name, password_hash=generate_password_hash(password), is_admin=admin)
    db.session.add(operator)
    audit.record(actor, Action.OPERATOR_CREATED, detail=f"{name}{' (admin)' if admin else ''}")
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(f"an operator named {name!r} already exists", field="name") from None
    log.info("operator %d created%s", operator.id, " (admin)" if admin else "")
    return operator


def _keep_an_admin(operator: Operator, doing: str) -> None:
    """Refuse to disable or demote the last enabled admin: someone must still be able to manage numbers and
    operators from the dashboard (the command line could recover, but only with access to the server).

    The enabled admins are locked first (PostgreSQL: FOR UPDATE; SQLite: the write lock), so two admins
    demoting each other at the same moment cannot both succeed."""
    if not operator.is_admin or operator.disabled_at is not None:
        return
    admins = db.session.scalars(
        select(Operator.id).where(Operator.is_admin.is_(True), Operator.disabled_at.is_(None)).with_for_update()
    ).all()
    if set(admins) <= {operator.id}:
        raise Conflict(
            f"{operator.name} is the only enabled admin, so they cannot be {doing}: make another operator an "
            "admin first, so someone can still manage numbers and operators",
            field="name",
        )


def disable_operator(name: str, actor: str | None = None) -> Operator:
    """The operator can no longer sign in; their sessions and open sockets end now. The last enabled admin
    cannot be disabled (Conflict)."""
    begin_write()
    operator = get_operator(name)
    _keep_an_admin(operator, "disabled")
    if operator.disabled_at is None:
        operator.disabled_at = utcnow()
    _end_all_sessions(operator.id)
    audit.record(actor, Action.OPERATOR_DISABLED, detail=operator.name)
    db.session.commit()
    log.info("operator %d disabled", operator.id)
    events.announce(events.operator_signed_out, operator_id=str(operator.id))
    return operator


def enable_operator(name: str, actor: str | None = None) -> Operator:
    operator = get_operator(name)
    operator.disabled_at = None
    audit.record(actor, Action.OPERATOR_ENABLED, detail=operator.name)
    db.session.commit()
    log.info("operator %d enabled", operator.id)
    return operator


def reset_password(name: str, password: str, actor: str | None = None) -> Operator:
    """A new password; every session of the operator ends (whoever knew the old one is signed out)."""
    operator = get_operator(name)
    operator.password_hash = generate_password_hash(check_password(password))
    _end_all_sessions(operator.id)
    audit.record(actor, Action.OPERATOR_PASSWORD_RESET, detail=operator.name)
    db.session.commit()
    log.info("operator %d password reset", operator.id)
    events.announce(events.operator_signed_out, operator_id=str(operator.id))
    return operator


def set_admin(name: str, admin: bool, actor: str | None = None) -> Operator:
    """Promote (admin=True) or demote; the last enabled admin cannot be demoted (Conflict)."""
    begin_write()
    operator = get_operator(name)
    if not admin:
        _keep_an_admin(operator, "demoted")
    operator.is_admin = bool(admin)
    audit.record(actor, Action.OPERATOR_ADMIN_CHANGED, detail=f"{operator.name}: {'admin' if admin else 'dispatcher'}")
    db.session.commit()
    log.info("operator %d %s", operator.id, "promoted to admin" if admin else "is no longer admin")
    return operator


def authenticate(name: str, password: str) -> Operator | None:
    """The operator whose name and password these are (disabled ones included: the caller tells them
    apart), or None. Costs one password hash whether or not the name exists."""
    name = (name or "").strip()[:MAX_NAME]
    operator = db.session.scalar(select(Operator).where(Operator.name == name)) if name else None
    password = password if isinstance(password, str) and len(password) <= MAX_PASSWORD else ""
    ok = check_password_hash(operator.password_hash if operator else _DUMMY_HASH, password)
    return operator if operator and ok else None


def operator_exists(name: str) -> bool:
    name = (name or "").strip()[:MAX_NAME]
    return bool(name) and db.session.scalar(select(Operator.id).where(Operator.name == name)) is not None


# ------------------------------------------------------------------ sessions


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def start_session(operator: Operator) -> str:
    """A new session for `operator`; returns the key for the browser's cookie (kept nowhere else)."""
    now = utcnow()
    key = secrets.token_urlsafe(32)
    hours = float(current_app.config["SESSION_HOURS"])
    db.session.execute(delete(OperatorSession).where(OperatorSession.expires_at < now))
    db.session.add(
        OperatorSession(
            operator_id=operator.id, key_hash=key_hash(key), created_at=now, expires_at=now + timedelta(hours=hours)
        )
    )
    operator.last_login_at = now
    db.session.commit()
    return key


def session_operator(operator_id: object, key: object) -> Operator | None:
    """The enabled operator whose live session this cookie's key opens, or None."""
    if not isinstance(key, str) or not key or len(key) > 200:
        return None
    try:
        oid = int(str(operator_id))
    except ValueError:
        return None
    if not 0 < oid < 2**63:
        return None
    return db.session.scalar(
        select(Operator)
        .join(OperatorSession, OperatorSession.operator_id == Operator.id)
        .where(
            OperatorSession.key_hash == key_hash(key),
            Operator.id == oid,
            OperatorSession.expires_at > utcnow(),
            Operator.disabled_at.is_(None),
        )
    )


def end_session(key: object) -> str | None:
    """End the session this key opens (sign-out); returns its hash, for closing its sockets."""
    if not isinstance(key, str) or not key:
        return None
    digest = key_hash(key)
    db.session.execute(delete(OperatorSession).where(OperatorSession.key_hash == digest))
    db.session.commit()
    events.announce(events.session_ended, session_hash=digest)
    return digest


def live_session_hashes(hashes: list[str]) -> set[str]:
    """Of these session hashes, the ones still valid (not ended, not expired, operator enabled)."""
    if not hashes:
        return set()
    rows = db.session.scalars(
        select(OperatorSession.key_hash)
        .join(Operator, Operator.id == OperatorSession.operator_id)
        .where(
            OperatorSession.key_hash.in_(hashes),
            OperatorSession.expires_at > utcnow(),
            Operator.disabled_at.is_(None),
        )
    )
    return set(rows)


def _end_all_sessions(operator_id: int) -> None:
    db.session.execute(delete(OperatorSession).where(OperatorSession.operator_id == operator_id))
