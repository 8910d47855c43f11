"""GroupCommitter's logic: batching, acknowledgement after the store returned, isolation of a
rejected event, callers that gave up. The store is a fake (pure logic); the database
behaviour is covered in tests/integration/test_audit_db_path.py."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import psycopg
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from reference.audit.event import AuditEvent
from reference.audit.group_commit import GroupCommitConfig, GroupCommitter
from reference.audit.store import AuditStore


class FakeStore(AuditStore):
    """Commits when `gate` is set; rejects any batch holding a `poison` event."""

    def __init__(self) -> None:
        super().__init__(create_async_engine("postgresql+psycopg://nobody@127.0.0.1:1/none"))
        self.gate = asyncio.Event()
        self.gate.set()
        self.poison: set[object] = set()
        self.batches: list[list[AuditEvent]] = []
        self.committed: list[AuditEvent] = []

    async def insert_many(
        self, events: Sequence[AuditEvent], path: str, *, timeout_s: float | None = None
    ) -> int:
        self.batches.append(list(events))
        await self.gate.wait()
        if any(e.event_id in self.poison for e in events):
            raise psycopg.DataError("value out of range")
        self.committed.extend(events)
        return len(events)

    async def insert_one(
        self, event: AuditEvent, path: str, *, timeout_s: float | None = None
    ) -> int:
        return await self.insert_many([event], path, timeout_s=timeout_s)


def _events(n: int) -> list[AuditEvent]:
    return [AuditEvent.new("a", "b", "c", str(i)) for i in range(n)]


async def test_concurrent_callers_share_batches_and_wait_for_the_commit() -> None:
    """While the first batch is held, later callers queue into one batch; nobody returns
    before the store returned for the batch holding its event."""
    store = FakeStore()
    store.gate.clear()
    committer = GroupCommitter(store, "db", 5.0, GroupCommitConfig(max_batch=100, max_inflight=1))
    events = _events(30)
    tasks = [asyncio.create_task(committer.insert(e)) for e in events]
    await asyncio.sleep(0.05)
    assert not any(t.done() for t in tasks)  # held: no acknowledgement before the commit
    assert [len(b) for b in store.batches] == [30]
    store.gate.set()
    await asyncio.gather(*tasks)
    assert store.committed == events
    assert committer.stats.batches == 1 and committer.stats.largest_batch == 30


async def test_a_lone_caller_is_not_delayed() -> None:
    """With a free slot, one event goes at once, alone."""
    store = FakeStore()
    committer = GroupCommitter(store, "db", 5.0)
    await asyncio.wait_for(committer.insert(_events(1)[0]), 1.0)
    assert [len(b) for b in store.batches] == [1]


async def test_a_rejected_event_fails_only_its_own_caller() -> None:
    """A data error on a batch: retried one by one, only the guilty caller gets it."""
    store = FakeStore()
    store.gate.clear()
    committer = GroupCommitter(store, "db", 5.0, GroupCommitConfig(max_inflight=1))
    events = _events(10)
    store.poison = {events[4].event_id}
    first = asyncio.create_task(committer.insert(events[0]))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(committer.insert(e)) for e in events[1:]]
    store.gate.set()
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    errors = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert errors == [4]
    assert isinstance(results[4], psycopg.DataError)
    assert {e.event_id for e in store.committed} == {e.event_id for e in events} - store.poison


async def test_a_failed_batch_fails_every_caller_in_it() -> None:
    """Any other failure (a timeout, a lost connection) reaches every caller of the batch."""

    class Down(FakeStore):
        async def insert_many(
            self, events: Sequence[AuditEvent], path: str, *, timeout_s: float | None = None
        ) -> int:
            raise TimeoutError("database operation exceeded 0.4s")

    committer = GroupCommitter(Down(), "db", 0.4)
    results = await asyncio.gather(
        *(committer.insert(e) for e in _events(5)), return_exceptions=True
    )
    assert all(isinstance(r, TimeoutError) for r in results), results


async def test_a_caller_that_gave_up_is_left_out_of_the_next_batch() -> None:
    """Cancelled while waiting for a slot: its event is not sent."""
    store = FakeStore()
    store.gate.clear()
    committer = GroupCommitter(store, "db", 5.0, GroupCommitConfig(max_inflight=1))
    events = _events(3)
    first = asyncio.create_task(committer.insert(events[0]))
    await asyncio.sleep(0)
    quitter = asyncio.create_task(committer.insert(events[1]))
    stayer = asyncio.create_task(committer.insert(events[2]))
    await asyncio.sleep(0)
    quitter.cancel()
    store.gate.set()
    await asyncio.gather(first, stayer)
    with pytest.raises(asyncio.CancelledError):
        await quitter
    assert [[e.entity_id for e in b] for b in store.batches] == [["0"], ["2"]]


def test_config_rejects_nonsense() -> None:
    """Zero batch size or zero slots: a clear error."""
    with pytest.raises(ValueError, match="max_batch"):
        GroupCommitConfig(max_batch=0)
