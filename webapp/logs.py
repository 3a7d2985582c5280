"""Logging, configured once at the entry point. Log lines carry ids and masked numbers, never bodies.

A last line of defence masks anything shaped like a phone number in every formatted line, tracebacks and
database error details included (PostgreSQL's "Key (real_number)=(+447700900111) already exists").
"""

from __future__ import annotations

import logging
import re

from .proxy import mask_for_log

# +E.164, or a bare run of 10-15 digits (Vonage writes numbers without the plus) that is not part of a word,
# an id or a decimal.
_NUMBER = re.compile(r"(?<![\w.+-])\+?\d{10,15}(?![\w.])|\+\d{7,9}(?![\w.])")


def redact(text: str) -> str:
    return _NUMBER.sub(lambda m: mask_for_log(m.group() if m.group().startswith("+") else "+" + m.group()), text)


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        if not isinstance(handler.formatter, RedactingFormatter):
            fmt = handler.formatter
            handler.setFormatter(RedactingFormatter(fmt._fmt if fmt else None, fmt.datefmt if fmt else None))
    # The SDK logs numbers, text and the Authorization header at DEBUG (docs/vonage.md §1.2).
    logging.getLogger("vonage").setLevel(logging.WARNING)
    logging.getLogger("vonage_http_client").setLevel(logging.WARNING)
    # Werkzeug's access log prints query strings: GET webhooks carry numbers, text and ?token= there.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
