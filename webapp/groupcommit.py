"""Group commit: many threads' writes in one transaction, each caller answered only once its write is durable.

SQLite has one writer at a time (database.py), so concurrent webhooks queue for it anyway; a commit then costs
more than the rows it writes. `GroupCommit.submit(item)` queues `item`; the first caller to find nobody writing
becomes the leader: it takes every item queued (up to `max_batch`), writes them with `run_batch` in one
transaction, hands each caller its own result (or exception) and passes the lead to the next caller waiting.
A caller alone runs alone, at once: the group only forms while a commit is under way, so batching adds no
waiting of its own; under load, one commit carries the webhooks that arrived during the previous one.

`run_batch(items)` returns one result or exception per item. It commits before it returns, and it owns the
isolation: when the shared transaction fails it rolls back and writes each item alone, so one bad item fails
only its own caller (relay.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_WAITING, _DONE, _LEAD = 0, 1, 2


class _Slot(Generic[T, R]):
    __slots__ = ("item", "outcome", "result", "state", "wake")

    def __init__(self, item: T) -> None:
        self.item = item
        self.state = _WAITING
        self.result: R | None = None
        self.outcome: BaseException | None = None
        self.wake = threading.Lock()
        self.wake.acquire()  # released by whoever decides this slot's fate


class GroupCommit(Generic[T, R]):
    def __init__(self, run_batch: Callable[[list[T]], list[R | BaseException]], max_batch: int = 64) -> None:
        self._run_batch = run_batch
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Slot[T, R]] = []
        self._leading = False
        self.batches = 0  # statistics, for benchmarks and tests
        self.items = 0

    def submit(self, item: T) -> R:
        """Write `item` with others queued meanwhile; return its result once committed (or raise its error)."""
        slot: _Slot[T, R] = _Slot(item)
        with self._lock:
            self._queue.append(slot)
            lead = not self._leading
            self._leading = True
        if not lead:
            slot.wake.acquire()  # until the leader answers it, or makes it the next leader
        if slot.state != _DONE:
            self._lead()
        if slot.outcome is not None:
            raise slot.outcome
        return slot.result  # type: ignore[return-value]

    def _lead(self) -> None:
        with self._lock:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        try:
            outcomes = self._run_batch([s.item for s in batch])
        except BaseException as exc:  # run_batch isolates items; this is the whole write failing
            outcomes = [exc] * len(batch)
        self.batches += 1
        self.items += len(batch)
        for slot, outcome in zip(batch, outcomes):
            if isinstance(outcome, BaseException):
                slot.outcome = outcome
            else:
                slot.result = outcome
            slot.state = _DONE
        with self._lock:
            if self._queue:
                self._queue[0].state = _LEAD
                self._queue[0].wake.release()
            else:
                self._leading = False
        for slot in batch:
            if slot.wake.locked():
                slot.wake.release()
