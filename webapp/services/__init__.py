"""Use cases. Each owns its transaction: validate, write, commit, then announce (webapp.events).

Errors are raised as `ServiceError` subclasses (errors.py) that carry an HTTP status, a field and a message
for people; views turn them into responses.
"""

from __future__ import annotations

from .chats import end_chat, find_chats, get_chat, list_chats, start_chat
from .errors import Conflict, InvalidInput, NotFound, ServiceError
from .inbound import receive_sms
from .pool import add_number, list_numbers, remove_number, sync_pool
from .receipts import record_receipt

__all__ = [
    "Conflict",
    "InvalidInput",
    "NotFound",
    "ServiceError",
    "add_number",
    "end_chat",
    "find_chats",
    "get_chat",
    "list_chats",
    "list_numbers",
    "receive_sms",
    "record_receipt",
    "remove_number",
    "start_chat",
    "sync_pool",
]
