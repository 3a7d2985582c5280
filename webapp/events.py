"""Domain events: what changed, by id, announced by services after they commit.

A leaf module (blinker signals, as Flask uses for its own): it imports nothing from webapp, so services
announce without knowing who listens. `live.py` subscribes and rings the dashboards; other listeners (event
callbacks to the firm's backend, metrics) can subscribe the same way. A listener that raises never breaks
the service that announced: `announce()` catches and logs it.

Every signal is sent with keyword arguments only; the sender is always None.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from blinker import NamedSignal, Namespace

log = logging.getLogger(__name__)

_signals = Namespace()

#: chat_id: a chat was created.
chat_created = _signals.signal("chat-created")
#: chat_id: a chat ended (by anyone, for any reason).
chat_ended = _signals.signal("chat-ended")
#: chat_id: a dispatcher read the chat (its unread marker was cleared).
chat_read = _signals.signal("chat-read")
#: chat_id (None for an unrouted text), message_id: a message was stored.
message_added = _signals.signal("message-added")
#: chat_id, message_id, status: a message's state changed.
message_status = _signals.signal("message-status")
#: chat_id: a part of a multipart text from a party of this chat arrived and is held until its set is complete.
part_held = _signals.signal("part-held")
#: (no arguments): the pool of proxy numbers changed.
numbers_changed = _signals.signal("numbers-changed")
#: operator_id: every session of an operator ended (disabled, password reset); their open sockets must close.
operator_signed_out = _signals.signal("operator-signed-out")
#: message_id: a dispatcher marked an unrouted text handled.
unrouted_handled = _signals.signal("unrouted-handled")
#: session_hash: one sign-in session ended (signed out); the sockets opened with it must close.
session_ended = _signals.signal("session-ended")


ALL: tuple[NamedSignal, ...] = (
    chat_created, chat_ended, chat_read, message_added, message_status, numbers_changed, operator_signed_out,
    unrouted_handled,
    part_held,
)
_BY_NAME = {signal.name: signal for signal in ALL}

# Where this process's announcements go instead of its own listeners (None: to its listeners). The outbox
# process that `python -m webapp` starts hands them to the web process, whose listeners (the dashboards' live
# layer among them) then hear them exactly once (server.py).
_sink: Callable[[str, dict[str, Any]], None] | None = None


def by_name(name: str) -> NamedSignal:
    """The signal called `name` (KeyError for an unknown name)."""
    return _BY_NAME[name]


def redirect(sink: Callable[[str, dict[str, Any]], None] | None) -> None:
    """Send this process's announcements to `sink(signal name, data)` instead of its listeners (None: undo)."""
    global _sink
    _sink = sink


def announce(signal: NamedSignal, **data: Any) -> None:
    """Send `signal` to its listeners; a failing listener is logged and never reaches the announcer."""
    if _sink is not None:
        try:
            _sink(signal.name, data)
        except Exception:
            log.exception("announcing %s failed", signal.name)
        return
    for receiver in signal.receivers_for(None):
        try:
            receiver(None, **data)
        except Exception:
            log.exception("listener of %s failed", signal.name)
