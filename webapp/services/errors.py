"""Errors of the use cases: each carries an HTTP status, the offending field and a message for people."""

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


class PoolExhausted(Conflict):
    """No proxy number is free for both people (or the pool is empty): a 409 on field `proxy_number`.

    `reason` says who blocks in plain words ("Customer (+44 •••• ••01 11) is already in a chat on every proxy
    number."); `can_end_chats` is False when the pool is simply empty. The message adds what a dispatcher can
    do; the dashboard shows an admin a link to the numbers page instead of "ask an admin".
    """

    def __init__(self, reason: str, can_end_chats: bool) -> None:
        self.reason = reason
        self.can_end_chats = can_end_chats
        fix = "End one of their active chats, or ask an admin to add a number to the pool."
        super().__init__(f"{reason} {fix if can_end_chats else 'Ask an admin to add a number to the pool.'}",
                         field="proxy_number")
