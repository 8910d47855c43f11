"""The recovery job on real PostgreSQL: exactly once, concurrent runs, crashes, corruption."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import pytest_asyncio

from reference.audit.event import AuditEvent
from reference.audit.journal import Journal, JournalConfig
from reference.audit.journal_format import list_segments, read_segment
from reference.audit.recovery import (
    RECOVERY_LOCK_FILE,
    Checkpoint,
    RecoveryConfig,
    RecoveryJob,
    read_checkpoint,
    write_checkpoint,
)
from reference.audit.store import AuditStore
from reference.clock import SYSTEM_CLOCK
from scenarios.stack import Stack
from tests.integration.audit_support import fresh_store, make_event, rows_per_event

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest_asyncio.fixture
async def store(stormproof_stack: Stack) -> AsyncIterator[AuditStore]:
    """A store with fresh tables (through the proxy), dropped afterwards."""
    async with fresh_store(stormproof_stack) as fresh:
        yield fresh


async def _journal(directory: Path, segment_bytes: int = 64 * 1024) -> Journal:
    journal = Journal(JournalConfig(directory, segment_max_bytes=segment_bytes), SYSTEM_CLOCK)
    await journal.open()
    return journal


async def _write(directory: Path, events: Sequence[AuditEvent], segment_bytes: int) -> None:
    """Journal `events` and close the journal (every segment sealed)."""
    journal = await _journal(directory, segment_bytes)
    await asyncio.gather(*(journal.append(e.to_json_bytes()) for e in events))
    await journal.close()


async def _rows(stack: Stack, store: AuditStore) -> dict[uuid.UUID, int]:
    return await rows_per_event(stack, store.table)


async def test_two_concurrent_runs_replay_nothing_twice(
    stormproof_stack: Stack, store: AuditStore, tmp_path: Path
) -> None:
    """Two runs at once: one works, one reports busy; totals add up to the journal, once."""
    events = [make_event(i) for i in range(3000)]
    await _write(tmp_path, events, 64 * 1024)
    assert len(list_segments(tmp_path)) > 5
    jobs = [RecoveryJob(RecoveryConfig(tmp_path, batch_size=400), store) for _ in range(2)]
    results = await asyncio.gather(*(job.run_once() for job in jobs))
    assert sum(r.replayed for r in results) == 3000
    assert sum(r.inserted for r in results) == 3000
    assert all(r.remaining == 0 for r in results if not r.busy)
    assert await _rows(stormproof_stack, store) == {e.event_id: 1 for e in events}
    assert list_segments(tmp_path) == []
    assert read_checkpoint(tmp_path) is None


async def test_runs_from_two_processes_replay_nothing_twice(
    stormproof_stack: Stack, store: AuditStore, tmp_path: Path
) -> None:
    """A run in another process and one here, started together: each record replayed once."""
    events = [make_event(i) for i in range(3000)]
    await _write(tmp_path, events, 64 * 1024)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.integration.audit_child", "recover",
        stormproof_stack.urls.database_url, str(tmp_path), store.table,
        cwd=REPO, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    try:
        async with asyncio.timeout(60):
            assert await child.stdout.readline() == b"ready\n"
            child.stdin.write(b"go\n")  # both start now
            await child.stdin.drain()
            here = await RecoveryJob(RecoveryConfig(tmp_path, batch_size=200), store).run_once()
            out, _ = await child.communicate()
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    there = json.loads(out.decode().strip().splitlines()[-1])
    assert child.returncode == 0
    assert here.replayed + there["replayed"] == 3000, (here, there)
    assert here.inserted + there["inserted"] == 3000
    assert await _rows(stormproof_stack, store) == {e.event_id: 1 for e in events}


async def test_lock_held_elsewhere_returns_busy_at_once(
    stormproof_stack: Stack, store: AuditStore, tmp_path: Path
) -> None:
    """While another process holds the recovery lock, a run returns busy without replaying."""
    events = [make_event(i) for i in range(50)]
    await _write(tmp_path, events, 1024 * 1024)
    code = (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(tmp_path / RECOVERY_LOCK_FILE)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(30)\n"
    )
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
    )
    assert holder.stdout is not None
    try:
        async with asyncio.timeout(10):
            assert await holder.stdout.readline() == b"locked\n"
            result = await RecoveryJob(RecoveryConfig(tmp_path), store).run_once()
        assert result.busy and result.replayed == 0 and result.remaining == 50
    finally:
        holder.kill()
        await holder.wait()
    result = await RecoveryJob(RecoveryConfig(tmp_path), store).run_once()
    assert not result.busy and result.replayed == 50
    assert len(await _rows(stormproof_stack, store)) == 50


class CrashAfterCommit(RecoveryJob):
    """Dies (raises) after the `crash_at`-th batch commit, before its checkpoint."""

    crash_at = 2

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.saved = 0

    def save_checkpoint(self, checkpoint: Checkpoint | None) -> None:
        if checkpoint is not None:
            self.saved += 1
            if self.saved == self.crash_at:
                raise RuntimeError("crash between commit and checkpoint")
        super().save_checkpoint(checkpoint)


async def test_crash_between_commit_and_checkpoint_replays_into_the_key(
    stormproof_stack: Stack, store: AuditStore, tmp_path: Path
) -> None:
    """The batch committed but not checkpointed is sent again; the primary key absorbs it."""
    events = [make_event(i) for i in range(2000)]
    await _write(tmp_path, events, 16 * 1024 * 1024)
    with pytest.raises(RuntimeError, match="crash between commit"):
        await CrashAfterCommit(RecoveryConfig(tmp_path, batch_size=500), store).run_once()
    assert len(await _rows(stormproof_stack, store)) == 1000  # two batches committed
    checkpoint = read_checkpoint(tmp_path)
    assert checkpoint is not None and checkpoint.offset > 0  # after the first batch only

    result = await RecoveryJob(RecoveryConfig(tmp_path, batch_size=500), store).run_once()
    assert result.replayed == 1500  # batches 2 (again), 3 and 4
    assert result.inserted == 1000
    assert result.remaining == 0
    assert await _rows(stormproof_stack, store) == {e.event_id: 1 for e in events}


async def test_corrupt_and_invalid_records_are_quarantined(
    stormproof_stack: Stack, store: AuditStore, tmp_path: Path
) -> None:
    """A bit flip and a record that is not an event are set aside; everything else lands."""
    events = [make_event(i) for i in range(100)]
    journal = await _journal(tmp_path, 1024 * 1024)
    for event in events[:50]:
        await journal.append(event.to_json_bytes())
    await journal.append(b'{"not": "an event"}')
    for event in events[50:]:
        await journal.append(event.to_json_bytes())
    await journal.close()
    [(_, segment)] = list_segments(tmp_path)
    victim = read_segment(segment).records[10]
    data = bytearray(segment.read_bytes())
    data[victim.end - 5] ^= 0xFF  # inside the 11th event's payload
    segment.write_bytes(bytes(data))

    result = await RecoveryJob(RecoveryConfig(tmp_path), store).run_once()
    assert result.quarantined == 2
    assert result.remaining == 0
    rows = await _rows(stormproof_stack, store)
    assert rows == {e.event_id: 1 for i, e in enumerate(events) if i != 10}
    assert len(list((tmp_path / "quarantine").iterdir())) == 2
    assert list_segments(tmp_path) == []


async def test_live_journal_is_rotated_and_keeps_working(
    stormproof_stack: Stack, store: AuditStore, tmp_path: Path
) -> None:
    """With the live journal, everything acknowledged so far is replayed; appends go on."""
    journal = await _journal(tmp_path)
    try:
        first = [make_event(i) for i in range(50)]
        for event in first:
            await journal.append(event.to_json_bytes())
        job = RecoveryJob(RecoveryConfig(tmp_path), store, journal=journal)
        assert await job.backlog() == 50
        result = await job.run_once()
        assert (result.replayed, result.remaining) == (50, 0)
        late = make_event(99)
        await journal.append(late.to_json_bytes())
        assert await job.backlog() == 1
        assert (await job.run_once()).replayed == 1
    finally:
        await journal.close()
    assert set(await _rows(stormproof_stack, store)) == {e.event_id for e in [*first, late]}


async def test_without_journal_the_live_writers_segment_is_left_alone(
    stormproof_stack: Stack, store: AuditStore, tmp_path: Path
) -> None:
    """A run given no journal skips the newest segment while a writer holds the directory."""
    journal = await _journal(tmp_path, 4096)
    try:
        for i in range(60):
            await journal.append(make_event(i).to_json_bytes())
        active = journal.active_segment
        assert active is not None and len(list_segments(tmp_path)) > 2
        in_active = len(read_segment(active).records)
        result = await RecoveryJob(RecoveryConfig(tmp_path), store).run_once()
        assert result.replayed == 60 - in_active
        assert [path for _, path in list_segments(tmp_path)] == [active]
        await journal.append(make_event(60).to_json_bytes())  # the writer is unharmed
    finally:
        await journal.close()
    result = await RecoveryJob(RecoveryConfig(tmp_path), store).run_once()
    assert result.replayed == in_active + 1
    assert len(await _rows(stormproof_stack, store)) == 61


async def test_stale_checkpoint_does_not_skip_a_new_segment_of_the_same_name(
    stormproof_stack: Stack, store: AuditStore, tmp_path: Path
) -> None:
    """A checkpoint left for a deleted seg-1 must not skip a new seg-1's records."""
    events = [make_event(i) for i in range(20)]
    await _write(tmp_path, events, 1024 * 1024)
    [(_, segment)] = list_segments(tmp_path)
    write_checkpoint(tmp_path, Checkpoint(segment.name, segment.stat().st_size, "0" * 32))
    result = await RecoveryJob(RecoveryConfig(tmp_path), store).run_once()
    assert result.replayed == 20
    assert len(await _rows(stormproof_stack, store)) == 20


async def test_database_down_keeps_segments_for_the_next_run(
    stormproof_stack: Stack, store: AuditStore, tmp_path: Path
) -> None:
    """A run that cannot reach PostgreSQL fails in bounded time and deletes nothing."""
    events = [make_event(i) for i in range(30)]
    await _write(tmp_path, events, 1024 * 1024)
    before = list_segments(tmp_path)
    with stormproof_stack.postgres_proxy.down():
        started = time.monotonic()
        async with asyncio.timeout(10):
            with pytest.raises(Exception):  # noqa: B017 - the driver's error, whichever it is
                await RecoveryJob(RecoveryConfig(tmp_path, batch_timeout_s=2), store).run_once()
        assert time.monotonic() - started < 3
        assert list_segments(tmp_path) == before
    result = await RecoveryJob(RecoveryConfig(tmp_path), store).run_once()
    assert result.replayed == 30 and result.remaining == 0
    assert len(await _rows(stormproof_stack, store)) == 30
