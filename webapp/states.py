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


def for_javascript() -> dict[str, list[str]]:
    """The groups app.js needs (rendered into a <meta> tag, so the browser never keeps its own copy)."""
    return {"trouble": sorted(TROUBLE)}
