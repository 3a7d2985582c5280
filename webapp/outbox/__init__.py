"""The outbox: every outbound SMS is a queued row, sent by a worker, in order per recipient.

- queue.py    the only writer of outbound rows and lanes (`queue_message`, `queue_rows`, `requeue`);
- claim.py    takes due lanes (not rows), so a claim costs the same whatever the backlog, with a batch of
              each lane's oldest due messages;
- sender.py   sends a lane's batch through the gateway in order and settles the answers, isolated per message;
- worker.py   `drain_once()` and the background `Worker`;
- recovery.py the housekeeping jobs: interrupted sends, reconciliation of unconfirmed ones;
- delivery.py parts, receipts and client-refs, shared with the delivery-receipt service.
Guarantees and the states a message goes through: docs/delivery.md.
"""

from .claim import Batch, Job, claim, renew
from .queue import queue_message, queue_rows, requeue
from .recovery import reconcile_due, recover_interrupted
from .sender import backoff, gateway, rate_limiter, send_batch, settle_batch
from .worker import Worker, drain_once

__all__ = [
    "Batch",
    "Job",
    "Worker",
    "backoff",
    "claim",
    "drain_once",
    "gateway",
    "queue_message",
    "queue_rows",
    "rate_limiter",
    "reconcile_due",
    "recover_interrupted",
    "renew",
    "requeue",
    "send_batch",
    "settle_batch",
]
