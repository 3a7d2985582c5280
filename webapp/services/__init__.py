"""Use cases. Each owns its transaction: validate, write, commit, then announce (live.*) and wake the outbox.

Errors are raised as `ServiceError` subclasses that carry an HTTP status, a field and a message for people;
views turn them into responses.
"""

from __future__ import annotations


class ServiceError(Exception):
    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(ServiceError):
    status = 400


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


from .chats import end_chat, get_chat, list_chats, start_chat  # noqa: E402
from .inbound import receive_sms  # noqa: E402
from .pool import add_number, list_numbers, remove_number, sync_pool  # noqa: E402
from .receipts import record_receipt  # noqa: E402

__all__ = [
    "Conflict",
    "InvalidInput",
    "NotFound",
    "ServiceError",
    "add_number",
    "end_chat",
    "get_chat",
    "list_chats",
    "list_numbers",
    "receive_sms",
    "record_receipt",
    "remove_number",
    "start_chat",
    "sync_pool",
]
