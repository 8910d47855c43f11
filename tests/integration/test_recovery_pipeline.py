"""Recovery copies the next segment while the previous one commits: commits stay in order.

Three one-batch segments are replayed into a real PostgreSQL; the first segment's commit
fails (an error injected just before it, after its rows were copied). The segment copied
meanwhile must not commit past that failure: the run raises the first segment's error,
nothing is in the table, every segment is still there, and the next run replays every
event exactly once. A variant whose commits do not wait for the previous segment's is
flagged by the same check (the second segment's rows land while the first's did not).
And when a later segment fails, the commit in flight before it still lands; a variant
that cancels it is flagged.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from reference.audit.event import AuditEvent
from reference.audit.journal_format import encode_record, list_segments, read_segment
from reference.audit.recovery import RecoveryConfig, RecoveryJob
from reference.audit.store import AuditStore
from scenarios.bench.drain import write_segments
from scenarios.stack import Stack
from tests.integration.audit_support import fresh_store, rows_per_event

Hook = Callable[[], Awaitable[None]]
SEGMENTS = 3
PER_SEGMENT = 400


class CommitLost(RuntimeError):
    """The injected failure of the first segment's commit."""


def _journal(directory: Path) -> list[AuditEvent]:
    """Three segments of `PER_SEGMENT` events each; returns the events."""
    events = [AuditEvent.new("a", "update", "e", str(i), {"i": i}) for i in range(1200)]
    frame = len(encode_record(events[0].to_json_bytes())) + 8  # ids differ in length a bit
    write_segments(directory, [e.to_json_bytes() for e in events], 84 + frame * PER_SEGMENT)
    assert len(list_segments(directory)) >= SEGMENTS
    return events


def _fail_first_commit(store: AuditStore) -> None:
    """The first batch copies its rows, then fails just before its commit."""
    original = store.copy_replay_json
    calls = 0

    async def replay(docs: Sequence[bytes], path: str = "file", **kw: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            hook: Hook | None = kw.get("before_commit")

            async def failing() -> None:
                if hook is not None:
                    await hook()
                await asyncio.sleep(0.3)  # the next segment is being copied meanwhile
                raise CommitLost("first segment's commit lost")

            kw["before_commit"] = failing
        return await original(docs, path, **kw)

    store.copy_replay_json = replay  # type: ignore[method-assign]


class Unordered(RecoveryJob):
    """Broken variant: a batch signals that its rows are copied, then commits without
    waiting for the previous segment's commit."""

    async def _replay_batch(self, *args: Any, **kwargs: Any) -> bool:
        args = list(args)  # type: ignore[assignment]
        hook: Hook | None = args[4] if len(args) > 4 else kwargs.get("before_commit")
        if hook is None:
            return await super()._replay_batch(*args, **kwargs)
        waiting: list[asyncio.Task[None]] = []

        async def unordered() -> None:
            waiting.append(asyncio.ensure_future(hook()))
            await asyncio.sleep(0)  # the signal goes out; the wait is left behind

        if len(args) > 4:
            args[4] = unordered  # type: ignore[index]
        else:
            kwargs["before_commit"] = unordered
        try:
            return await super()._replay_batch(*args, **kwargs)
        finally:
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)


async def _rows(stack: Stack, store: AuditStore) -> dict[uuid.UUID, int]:
    return await rows_per_event(stack, store.table)


def _segment_of(directory: Path) -> dict[uuid.UUID, int]:
    """Which segment (1-based) each event was journaled in."""
    where = {}
    for number, (_, path) in enumerate(list_segments(directory), 1):
        for record in read_segment(path).records:
            where[uuid.UUID(json.loads(record.payload)["event_id"])] = number
    return where


@pytest.mark.parametrize("variant", ["reference", "unordered"])
async def test_a_failed_commit_stops_the_segments_after_it(
    stormproof_stack: Stack, tmp_path: Path, variant: str
) -> None:
    """Reference: the first segment's failed commit is the run's error, no row lands, every
    segment stays, the next run replays each event once. Unordered: a later segment's rows
    commit past the failure, and the check says which."""
    journal_dir = tmp_path / "journal"  # write_segments creates it
    events = _journal(journal_dir)
    where = _segment_of(journal_dir)
    job_type = RecoveryJob if variant == "reference" else Unordered
    async with fresh_store(stormproof_stack, op_timeout_s=30) as store:
        _fail_first_commit(store)
        failed = False
        try:
            await job_type(RecoveryConfig(journal_dir, batch_size=10_000), store).run_once()
        except CommitLost:
            failed = True
        landed = sorted({where[event_id] for event_id in await _rows(stormproof_stack, store)})
        if variant == "unordered":  # flagged: later segments committed past the failure
            assert 1 not in landed and 2 in landed, landed
            return
        assert failed
        assert landed == []
        assert len(list_segments(journal_dir)) == len(set(where.values()))

        store.copy_replay_json = AuditStore.copy_replay_json.__get__(store)  # type: ignore[method-assign]
        result = await RecoveryJob(RecoveryConfig(journal_dir, batch_size=10_000), store).run_once()
        assert (result.replayed, result.remaining) == (len(events), 0)
        assert await rows_per_event(stormproof_stack, store.table) == {
            e.event_id: 1 for e in events
        }


class CopyLost(RuntimeError):
    """The injected failure of the second segment's COPY."""


def _slow_first_commit_then_second_fails(store: AuditStore) -> None:
    """The first batch's commit waits a while; the second batch fails before copying."""
    original = store.copy_replay_json
    calls = 0

    async def replay(docs: Sequence[bytes], path: str = "file", **kw: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise CopyLost("second segment's COPY lost")
        if calls == 1:
            hook: Hook | None = kw.get("before_commit")

            async def slow() -> None:
                if hook is not None:
                    await hook()
                await asyncio.sleep(0.5)  # still committing when the second one fails

            kw["before_commit"] = slow
        return await original(docs, path, **kw)

    store.copy_replay_json = replay  # type: ignore[method-assign]


class CancelsCommits(RecoveryJob):
    """Broken variant: a run that fails cancels the previous segment's commit in flight."""

    async def _end_pending(self, cancel: bool) -> None:
        await super()._end_pending(cancel=True)


@pytest.mark.parametrize("variant", ["reference", "cancels"])
async def test_a_later_failure_keeps_the_commit_in_flight(
    stormproof_stack: Stack, tmp_path: Path, variant: str
) -> None:
    """Reference: the second segment's failure is the run's error, and the first segment's
    commit, in flight meanwhile, still lands (its rows there, the segment removed). The
    variant that cancels it loses that progress, and the check says so."""
    journal_dir = tmp_path / "journal"
    _journal(journal_dir)
    where = _segment_of(journal_dir)
    job_type = RecoveryJob if variant == "reference" else CancelsCommits
    async with fresh_store(stormproof_stack, op_timeout_s=30) as store:
        _slow_first_commit_then_second_fails(store)
        with pytest.raises(CopyLost):
            await job_type(RecoveryConfig(journal_dir, batch_size=10_000), store).run_once()
        landed = sorted({where[event_id] for event_id in await _rows(stormproof_stack, store)})
        segments = len(list_segments(journal_dir))
    if variant == "cancels":  # flagged: the first segment's commit was thrown away
        assert landed == [] and segments == len(set(where.values())), (landed, segments)
        return
    assert landed == [1]
    assert segments == len(set(where.values())) - 1


async def test_a_record_that_is_not_an_event_in_a_later_segment(
    stormproof_stack: Stack, tmp_path: Path
) -> None:
    """The second segment holds a record that is not an event while the first one commits:
    that batch is validated, the record quarantined, every event lands exactly once, and
    no segment is left."""
    journal_dir = tmp_path / "journal"
    events = [AuditEvent.new("a", "update", "e", str(i), {"i": i}) for i in range(1200)]
    docs = [e.to_json_bytes() for e in events]
    docs.insert(600, b'{"not": "an event"}')  # in the middle segment
    frame = len(encode_record(docs[0])) + 8
    write_segments(journal_dir, docs, 84 + frame * PER_SEGMENT)
    assert len(list_segments(journal_dir)) >= SEGMENTS
    async with fresh_store(stormproof_stack, op_timeout_s=30) as store:
        result = await RecoveryJob(RecoveryConfig(journal_dir, batch_size=10_000), store).run_once()
        assert (result.replayed, result.quarantined, result.remaining) == (len(docs), 1, 0)
        assert await _rows(stormproof_stack, store) == {e.event_id: 1 for e in events}
    assert list_segments(journal_dir) == []
