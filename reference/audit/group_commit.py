"""Group commit for the audit's database path: many callers, one INSERT, one commit.

While Redis is down every audit event is written to PostgreSQL synchronously. One
transaction per event spends most of its time on round trips and on a WAL flush per
commit; `GroupCommitter` instead gathers the events of concurrent callers and writes
them with `AuditStore.insert_many` (one `INSERT ... ON CONFLICT DO NOTHING`, one commit).

Guarantees:

- a caller is acknowledged (its `insert` returns) only after the commit of the batch that
  holds its event; if that batch failed, timed out or was abandoned, the caller gets the
  error (it must then not report success, or try another path);
- a lone caller is not delayed: a batch leaves as soon as a flush slot is free (at most
  `max_inflight` batches in flight); events arriving meanwhile form the next batch;
- a caller that gives up (cancelled, or its own deadline passed) before its batch left is
  taken out of it; one that gives up later may still be committed (harmless: the primary
  key absorbs a second delivery by another path);
- one event the database rejects for its data does not fail its neighbours: a batch that
  fails with a data or integrity error is retried event by event, and only the guilty
  caller gets the error.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from reference.audit.event import AuditEvent
from reference.audit.store import POISON_ERRORS, AuditStore

__all__ = ["GroupCommitConfig", "GroupCommitStats", "GroupCommitter"]


@dataclass(frozen=True, slots=True)
class GroupCommitConfig:
    """`max_batch` events per INSERT, at most `max_inflight` batches (connections) at once."""

    max_batch: int = 256
    max_inflight: int = 4

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_inflight < 1:
            raise ValueError("max_batch and max_inflight must be >= 1")


@dataclass(slots=True)
class GroupCommitStats:
    """What the committer did so far (for tests and the bench)."""

    batches: int = 0
    events: int = 0
    largest_batch: int = 0
    failed_batches: int = 0


_Waiter = tuple[AuditEvent, "asyncio.Future[None]"]


class GroupCommitter:
    """Writes events to `store` in group-committed batches; see the module docstring."""

    def __init__(
        self,
        store: AuditStore,
        path: str,
        timeout_s: float,
        config: GroupCommitConfig = GroupCommitConfig(),
    ) -> None:
        self.store = store
        self.path = path
        self.timeout_s = timeout_s
        self.config = config
        self.stats = GroupCommitStats()
        self._pending: deque[_Waiter] = deque()
        self._inflight = 0
        self._flushers: set[asyncio.Task[None]] = set()

    async def insert(self, event: AuditEvent) -> None:
        """Return once `event` is committed (in some batch); raise what failed its batch.

        Bounded by the store's operation timeout per batch; callers bound their own wait.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((event, future))
        if self._inflight < self.config.max_inflight:
            self._inflight += 1
            task = asyncio.create_task(self._flush())
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        await future

    async def _flush(self) -> None:
        """Send batches until nothing is pending; frees its slot when done."""
        try:
            while self._pending:
                batch = self._take()
                if batch:
                    await self._commit(batch)
        finally:
            self._inflight -= 1

    def _take(self) -> list[_Waiter]:
        """Up to `max_batch` waiting callers that have not given up."""
        batch: list[_Waiter] = []
        pending = self._pending
        limit = self.config.max_batch
        while pending and len(batch) < limit:
            waiter = pending.popleft()
            if not waiter[1].done():
                batch.append(waiter)
        return batch

    async def _commit(self, batch: list[_Waiter]) -> None:
        stats = self.stats
        stats.batches += 1
        stats.events += len(batch)
        stats.largest_batch = max(stats.largest_batch, len(batch))
        try:
            await self.store.insert_many([e for e, _ in batch], self.path, timeout_s=self.timeout_s)
        except POISON_ERRORS as exc:
            stats.failed_batches += 1
            if len(batch) == 1 or getattr(exc, "connection_invalidated", False):
                _settle(batch, exc)
            else:
                await self._one_by_one(batch)
        except BaseException as exc:
            stats.failed_batches += 1
            _settle(batch, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            _settle(batch, None)

    async def _one_by_one(self, batch: list[_Waiter]) -> None:
        """A batch the database rejected for its data: find the guilty event(s)."""
        for event, future in batch:
            if future.done():
                continue
            try:
                await self.store.insert_one(event, self.path, timeout_s=self.timeout_s)
            except BaseException as exc:
                _settle([(event, future)], exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                _settle([(event, future)], None)


def _settle(batch: list[_Waiter], error: BaseException | None) -> None:
    """Resolve every caller of `batch` that still waits: success, or its own copy of `error`."""
    for _, future in batch:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        elif isinstance(error, asyncio.CancelledError):
            future.cancel()
        elif isinstance(error, TimeoutError):
            future.set_exception(TimeoutError(*error.args))
        else:
            future.set_exception(error)
