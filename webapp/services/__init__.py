"""Use cases. Each owns its transaction: validate, write, commit, then announce (webapp.events).

Errors are raised as `ServiceError` subclasses (errors.py) that carry an HTTP status, a field and a message
for people; views turn them into responses.
"""

from __future__ import annotations

from .chats import end_chat, find_chats, get_chat, list_chats, start_chat
from .errors import Conflict, InvalidInput, NotFound, PoolExhausted, ServiceError
from .expiry import expire_due_chats
from .inbound import receive_sms
from .optouts import list_opt_outs
from .outbound import resend_message, send_operator_message
from .pool import add_number, list_numbers, remove_number, sync_pool
from .receipts import record_receipt
from .retention import purge_old_texts
from .transcripts import transcript_csv

__all__ = [
    "Conflict",
    "InvalidInput",
    "NotFound",
    "PoolExhausted",
    "ServiceError",
    "add_number",
    "end_chat",
    "expire_due_chats",
    "find_chats",
    "get_chat",
    "list_chats",
    "list_numbers",
    "list_opt_outs",
    "purge_old_texts",
    "receive_sms",
    "record_receipt",
    "remove_number",
    "resend_message",
    "send_operator_message",
    "start_chat",
    "sync_pool",
    "transcript_csv",
]
