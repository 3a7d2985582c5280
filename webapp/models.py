"""Typed SQLAlchemy 2 models. No commits here: services own transactions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from . import fulltext
from .extensions import db


def utcnow() -> datetime:
    return datetime.now(UTC)


def clip(column: Any, value: str | None) -> str | None:
    """`value` cut to the length of a String column (`clip(Message.error, text)`).

    Every error or reason we store goes through here: a text longer than its column is an error on
    PostgreSQL, and one such row must never stop the work around it.
    """
    if value is None:
        return None
    length = getattr(getattr(column, "type", None), "length", None)
    return value if length is None or len(value) <= length else value[: max(length - 1, 0)] + "…"


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ProxyNumber(db.Model):
    """A virtual number of ours that people text; one number serves many chats."""

    __tablename__ = "proxy_numbers"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    region: Mapped[str | None] = mapped_column(String(4))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Chat(db.Model):
    """Two real numbers joined through one proxy number."""

    __tablename__ = "chats"
    __table_args__ = (
        # What the jobs find their rows by, so a run costs what it finds, not the size of the history:
        # active chats by deadline (expiry), ended chats whose texts are still kept (retention). Composite
        # rather than partial, so SQLite's planner (without statistics) prefers them to ix_chats_status.
        Index("ix_chats_status_expires_at", "status", "expires_at"),
        Index("ix_chats_status_idle_at", "status", "idle_at"),
        Index("ix_chats_status_purged_ended", "status", "purged_at", "ended_at"),
        # the chat that last joined a person and a proxy number, one index probe per side (an unrouted text's
        # link, services/unrouted.py)
        Index("ix_chats_a_proxy", "a_number", "proxy_number", "id"),
        Index("ix_chats_b_proxy", "b_number", "proxy_number", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    a_number: Mapped[str] = mapped_column(String(20), index=True)
    b_number: Mapped[str] = mapped_column(String(20), index=True)
    a_label: Mapped[str | None] = mapped_column(String(60))
    b_label: Mapped[str | None] = mapped_column(String(60))
    reference: Mapped[str | None] = mapped_column(String(120), index=True)
    proxy_number: Mapped[str] = mapped_column(String(20), index=True)
    status: Mapped[str] = mapped_column(String(10), default="active", index=True)
    ended_reason: Mapped[str | None] = mapped_column(String(20))
    created_by: Mapped[str | None] = mapped_column(String(60))
    # who ended it, as the audit trail names actors: "api", "operator:<name>", "system", "participant:a"
    ended_by: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # the time limit (expires_in / CHAT_TTL_SECONDS); NULL: none
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # seconds without a text from either party after which the chat ends (NULL: never), and when that is:
    # moved forward by every inbound text (services/relay.py), cleared when the chat ends
    idle_timeout: Mapped[int | None] = mapped_column(Integer)
    idle_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # when retention cleared the texts of this ended chat (services/retention.py)
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unread: Mapped[int] = mapped_column(Integer, default=0)

    routes: Mapped[list[Route]] = relationship(back_populates="chat", cascade="all, delete-orphan")

    def label(self, side: str) -> str | None:
        return self.a_label if side == "a" else self.b_label

    def number(self, side: str) -> str:
        return self.a_number if side == "a" else self.b_number


class Route(db.Model):
    """The routing key of an active chat: (real number, proxy number) -> chat. Unique by constraint."""

    __tablename__ = "routes"
    __table_args__ = (UniqueConstraint("real_number", "proxy_number", name="uq_route_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"), index=True)
    real_number: Mapped[str] = mapped_column(String(20))
    proxy_number: Mapped[str] = mapped_column(String(20), index=True)

    chat: Mapped[Chat] = relationship(back_populates="routes")


# An unrouted inbound text that no dispatcher has handled yet (ix_messages_unhandled, queries.py).
UNHANDLED = "chat_id IS NULL AND handled_at IS NULL AND direction = 'in'"


class Message(db.Model):
    """Every SMS we received or will send. Outbound rows in state `queued` are the outbox."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_outbox", "status", "next_attempt_at"),
        Index("ix_messages_chat", "chat_id", "id"),
        # Auto-replies only (a partial index): counts them for AUTO_REPLY_MAX_PER_HOUR without a scan.
        Index(
            "ix_messages_auto_reply_created",
            "created_at",
            postgresql_where=text("kind = 'auto_reply'"),
            sqlite_where=text("kind = 'auto_reply'"),
        ),
        # a lane's head: the oldest queued message to one recipient (outbox/queue.py)
        Index("ix_messages_lane", "to_number", "status", "id"),
        # texts outside any chat (unrouted, auto-replies) whose bodies retention has not cleared yet
        # (partial: a routed text, the bulk of the table, never enters it; the leading columns make SQLite's
        # planner prefer it to ix_messages_chat)
        Index(
            "ix_messages_chatless_unpurged",
            "chat_id",
            "purged_at",
            "created_at",
            postgresql_where=text("chat_id IS NULL AND purged_at IS NULL"),
            sqlite_where=text("chat_id IS NULL AND purged_at IS NULL"),
        ),
        # unrouted texts no dispatcher has handled yet: the nav badge counts them (partial: a routed or a
        # handled text never enters it; the leading column makes SQLite's planner prefer it)
        Index(
            "ix_messages_unhandled",
            "chat_id",
            "handled_at",
            "id",
            postgresql_where=text(UNHANDLED),
            sqlite_where=text(UNHANDLED),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    chat_id: Mapped[int | None] = mapped_column(ForeignKey("chats.id"))
    direction: Mapped[str] = mapped_column(String(3))  # "in" | "out"
    # in: "sms"; out: "relay" | "intro" | "notice" | "auto_reply"
    kind: Mapped[str] = mapped_column(String(12))
    side: Mapped[str | None] = mapped_column(String(1))  # in: sender's side; out: recipient's side
    from_number: Mapped[str] = mapped_column(String(20))
    to_number: Mapped[str] = mapped_column(String(20))
    text: Mapped[str] = mapped_column(Text, default="")
    # in: received | unrouted | opt_out ; out: queued | sending | submitted | delivered | failed | ...
    status: Mapped[str] = mapped_column(String(12))
    provider_id: Mapped[str | None] = mapped_column(String(64), unique=True)  # Vonage messageId (inbound)
    source_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(String(255))
    meta: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # set when retention replaced the body with "(removed after N days)"
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Unrouted texts only: the chat that last joined this sender and this proxy number when the text arrived
    # (active or ended; NULL for a stranger), and who marked the text handled, when ("operator:<name>", or
    # "system" for a STOP/START the opt-out register took care of).
    last_chat_id: Mapped[int | None] = mapped_column(Integer)
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    handled_by: Mapped[str | None] = mapped_column(String(80))

    parts: Mapped[list[SmsPart]] = relationship(back_populates="message", cascade="all, delete-orphan")


class SmsPart(db.Model):
    """One part of an outbound SMS as Vonage accepted it: its message id and delivery state.

    Vonage's ids are opaque and not ours to trust as unique: a part is (our message, Vonage's id), so a
    gateway that repeats an id can never break the settle of a send.
    """

    __tablename__ = "sms_parts"
    __table_args__ = (UniqueConstraint("message_id", "vonage_id", name="uq_part_message_vonage"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    vonage_id: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(12), default="submitted")
    error_code: Mapped[str | None] = mapped_column(String(8))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    message: Mapped[Message] = relationship(back_populates="parts")


class Lane(db.Model):
    """The outbox's queue for one recipient: texts to one person go out one at a time, oldest first.

    `due_at` is when the lane's head (its oldest queued message) may be sent; NULL when nothing is queued or a
    worker holds the lane. A worker claims due lanes, not messages (`due_at <= now`, by index), so claiming
    costs the same with ten or a hundred thousand texts queued; it holds a lane until `leased_until` and
    releases it when the send is settled. Written only by the outbox (outbox/queue.py, outbox/claim.py).
    """

    __tablename__ = "lanes"

    id: Mapped[int] = mapped_column(primary_key=True)
    recipient: Mapped[str] = mapped_column(String(20), unique=True)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)


class Operator(UserMixin, db.Model):
    """A dispatcher who signs in to the dashboard. Admins also manage numbers and operators."""

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(60), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # set: cannot sign in, sessions ended
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def is_active(self) -> bool:  # Flask-Login: a disabled operator cannot be signed in
        return self.disabled_at is None


class OperatorSession(db.Model):
    """One sign-in. The browser's cookie carries a random key whose SHA-256 is `key_hash`; deleting the row
    ends the session wherever its cookie is (sign-out, disable, password reset, expiry)."""

    __tablename__ = "operator_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Receipt(db.Model):
    """A delivery receipt as Vonage sent it; kept even when its message id is unknown to us."""

    __tablename__ = "receipts"

    id: Mapped[int] = mapped_column(primary_key=True)
    vonage_id: Mapped[str] = mapped_column(String(64), index=True)
    # our `client-ref` ("m<message id>") as Vonage echoed it: reconciles a send whose answer was lost
    client_ref: Mapped[str | None] = mapped_column(String(100), index=True)
    status: Mapped[str] = mapped_column(String(16))
    err_code: Mapped[str | None] = mapped_column(String(8))
    part_id: Mapped[int | None] = mapped_column(ForeignKey("sms_parts.id"))
    payload: Mapped[dict | None] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class HeldPart(db.Model):
    """One part of a multipart inbound SMS, held until its set is complete (or times out).

    A set is keyed by (sender, proxy number, concat-ref). Once relayed, `message_id` points at the assembled
    inbound message and the row stays, so a late repeat of the part (same Vonage messageId) is recognised.
    """

    __tablename__ = "held_parts"
    __table_args__ = (Index("ix_held_parts_set", "sender", "proxy_number", "concat_ref", "message_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[str] = mapped_column(String(64), unique=True)  # Vonage messageId of this part
    sender: Mapped[str] = mapped_column(String(20))
    proxy_number: Mapped[str] = mapped_column(String(20))
    concat_ref: Mapped[str] = mapped_column(String(32))
    total: Mapped[int] = mapped_column(Integer)
    part: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class OptOut(db.Model):
    """A person who texted STOP (or a synonym): they cannot be paired until they text START or UNSTOP."""

    __tablename__ = "opt_outs"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    proxy_number: Mapped[str | None] = mapped_column(String(20))  # the pool number they texted STOP to
    chat_id: Mapped[int | None] = mapped_column(Integer)  # the chat it ended, if any
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEvent(db.Model):
    """One action by an operator, the API or the system, written in the transaction of the action (audit.py)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(80))  # "api", "operator:<name>", "system", "cli", ...
    action: Mapped[str] = mapped_column(String(40))  # states.Action
    chat_id: Mapped[int | None] = mapped_column(Integer, index=True)
    detail: Mapped[str | None] = mapped_column(String(500))  # for people; masked numbers, never message text


class CallbackEvent(db.Model):
    """An event for the firm's backend (EVENTS_URL), written in the transaction of what caused it.

    Delivered at least once, in order per lane (one lane per chat), with the same `public_id` on every try
    (callbacks/). Written only by callbacks/record.py; its delivery state only by callbacks/sender.py.
    """

    __tablename__ = "callback_events"
    __table_args__ = (
        # a lane's head: its oldest pending event
        Index("ix_callback_events_lane", "lane", "status", "id"),
        # the health summary and the purge of old deliveries
        Index("ix_callback_events_finished", "status", "finished_at"),
        # recent pending events: the sender's check for a lane left idle under one (callbacks/worker.py)
        Index("ix_callback_events_recent", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)  # the "id" the receiver sees
    type: Mapped[str] = mapped_column(String(40))
    chat_id: Mapped[int | None] = mapped_column(Integer)
    lane: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # delivered, or given up


class CallbackLane(db.Model):
    """The event sender's queue for one chat: its events go out one at a time, oldest first.

    Like the outbox's lanes (Lane): `due_at` is when the head may be tried (NULL when nothing is pending or a
    sender holds the lane until `leased_until`), so claiming costs the same whatever the backlog.
    `failing_since` is set while the head keeps failing (dashboard, /healthz), cleared by a delivery.
    """

    __tablename__ = "callback_lanes"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(40), unique=True)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    last_error: Mapped[str | None] = mapped_column(String(255))


class IdempotencyKey(db.Model):
    """An `Idempotency-Key` of an API request, and the response it got (replayed for a retry).

    `response_status` is NULL while the first request is in progress; `committed_at` is written in the same
    transaction as the request's work (idempotency.py), so a crash can never leave the work done and the key
    free to do it again.
    """

    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    committed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)


# The search index (FTS5 tables and triggers on SQLite, expression indexes on PostgreSQL) is built with the
# tables: see fulltext.py.
fulltext.install(db.metadata)
