"""Event callbacks to the firm's backend (EVENTS_URL): recorded with their cause, delivered at least once.

- record.py     the only writer of events (`record`, and one builder per event type), called by services and
                the outbox inside the transaction of what caused the event;
- signing.py    `X-SMS-Proxy-Signature: t=...,v1=...` (HMAC-SHA256 over "<t>.<raw body>");
- sender.py     one delivery and its settle, isolated per event; backoff; giving up after 24 h;
- worker.py     claims due lanes (one per chat, so in order per chat), `drain_once()`, the `EventSender`
                thread, freeing lanes whose sender died, and reopening a lane left idle under a new event;
- health.py     whether deliveries fail now (dashboard, /healthz);
- retention.py  deleting old deliveries, expired idempotency keys and idle lanes (a scheduled job).
The contract for receivers: docs/events.md.
"""

from .health import delivery_health
from .retention import purge
from .worker import EventSender, drain_once, recover_leases, reopen_stranded

__all__ = ["EventSender", "delivery_health", "drain_once", "purge", "recover_leases", "reopen_stranded"]
