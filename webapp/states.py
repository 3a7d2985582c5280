"""The one vocabulary of states and kinds: defined here, used by services, queries, templates and app.js.

A leaf module: it imports nothing from webapp, so everyone may import it. Values are the strings stored in
the database and shown in the API, so renaming one is a schema change.
"""

from __future__ import annotations

from enum import StrEnum


class Direction(StrEnum):
    IN = "in"
    OUT = "out"


class Kind(StrEnum):
    """What a message is. Inbound: `sms` from a party. Outbound: the rest."""

    SMS = "sms"
    RELAY = "relay"
    INTRO = "intro"
    NOTICE = "notice"
    AUTO_REPLY = "auto_reply"
    OPERATOR = "operator"  # written by a dispatcher or the firm's backend


class Status(StrEnum):
    """A message's state.

    Outbound: queued -> sending -> submitted (Vonage accepted it) -> delivered, or failed / expired /
    rejected with a reason; `unconfirmed` when a send may or may not have reached Vonage (it waits for a
    receipt carrying its client-ref, then is sent again). Inbound: received, unrouted, opt_out.
    """

    QUEUED = "queued"
    SENDING = "sending"
    UNCONFIRMED = "unconfirmed"
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    FAILED = "failed"
    EXPIRED = "expired"
    REJECTED = "rejected"
    UNKNOWN = "unknown"
    RECEIVED = "received"
    UNROUTED = "unrouted"
    OPT_OUT = "opt_out"


class ChatStatus(StrEnum):
    ACTIVE = "active"
    ENDED = "ended"


class EndedReason(StrEnum):
    OPERATOR = "operator"
    API = "api"
    EXPIRED = "expired"
    IDLE = "idle"
    OPT_OUT = "opt_out"


class Recipient(StrEnum):
    """Whom a dispatcher's own message goes to (`POST /api/chats/<id>/messages`, the compose box)."""

    A = "a"
    B = "b"
    BOTH = "both"


class Action(StrEnum):
    """What the audit trail records (audit.py). Stored as text: renaming one changes the recorded history."""

    CHAT_CREATED = "chat.created"
    CHAT_ENDED = "chat.ended"
    MESSAGE_SENT = "message.sent"  # a dispatcher's (or the API's) own message
    MESSAGE_RESENT = "message.resent"
    NUMBER_ADDED = "number.added"
    NUMBER_REMOVED = "number.removed"
    OPERATOR_CREATED = "operator.created"
    OPERATOR_DISABLED = "operator.disabled"
    OPERATOR_ENABLED = "operator.enabled"
    OPERATOR_PASSWORD_RESET = "operator.password_reset"
    OPERATOR_ADMIN_CHANGED = "operator.admin_changed"
    OPT_OUT_ADDED = "opt_out.added"
    OPT_OUT_LIFTED = "opt_out.lifted"
    TRANSCRIPT_EXPORTED = "transcript.exported"
    TEXTS_PURGED = "texts.purged"
    UNROUTED_HANDLED = "unrouted.handled"  # a dispatcher dealt with a text that reached no chat


class Actor:
    """Who did something, as the audit trail and `chats.ended_by` write it: `api`, `operator:<name>`, ..."""

    API = "api"
    SYSTEM = "system"  # a scheduled job: expiry, retention
    CLI = "cli"  # a `flask` command run on the server
    SMS = "sms"  # a text from someone outside any chat (STOP / START to a pool number)

    @staticmethod
    def operator(name: str) -> str:
        return f"operator:{name}"

    @staticmethod
    def participant(side: str) -> str:
        """A party of the chat, by a text they sent (STOP)."""
        return f"participant:{side}"


class EventType(StrEnum):
    """The types of the event callbacks sent to EVENTS_URL (docs/events.md). A public contract: never rename."""

    CHAT_CREATED = "chat.created"
    CHAT_ENDED = "chat.ended"  # any reason: operator, api, opt_out, expired, idle...
    MESSAGE_RECEIVED = "message.received"
    MESSAGE_DELIVERED = "message.delivered"
    MESSAGE_FAILED = "message.failed"  # failed, expired or rejected: `status` and `reason` say which
    PARTICIPANT_OPTED_OUT = "participant.opted_out"


class CallbackStatus(StrEnum):
    """An event callback's delivery: pending (being tried), delivered (a 2xx answer), failed (given up)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


# Outbound messages still on their way out (the worker owns them).
IN_FLIGHT = frozenset({Status.QUEUED, Status.SENDING})
# A part's or a message's delivery state that will not change any more.
FINAL_FAILURES = frozenset({Status.FAILED, Status.EXPIRED, Status.REJECTED})
FINAL = frozenset({Status.DELIVERED, *FINAL_FAILURES})
# Shown to a dispatcher as "this did not (or may not have) reached the person".
TROUBLE = frozenset({*FINAL_FAILURES, Status.UNKNOWN, Status.UNCONFIRMED})
# A dispatcher may send these again.
RESENDABLE = frozenset({*FINAL_FAILURES, Status.UNCONFIRMED})
# Accepted by Vonage: a phone has it or will have it.
SENT = frozenset({Status.SUBMITTED, Status.DELIVERED})
# Messages the app writes itself (not a person's text or its relay), shown apart in a transcript.
SYSTEM_KINDS = frozenset({Kind.INTRO, Kind.NOTICE, Kind.AUTO_REPLY})


def for_javascript() -> dict[str, list[str]]:
    """The groups app.js needs (rendered into a <meta> tag, so the browser never keeps its own copy)."""
    return {"trouble": sorted(TROUBLE)}
