"""Logging, configured once at the entry point. Log lines carry ids and masked numbers, never bodies."""

from __future__ import annotations

import logging


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The SDK logs numbers, text and the Authorization header at DEBUG (docs/vonage.md §1.2).
    logging.getLogger("vonage").setLevel(logging.WARNING)
    logging.getLogger("vonage_http_client").setLevel(logging.WARNING)
    # Werkzeug's access log prints query strings: GET webhooks carry numbers and text there.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
