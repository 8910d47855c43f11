"""Recovery job parts that need no database: checkpoint file, lock, backlog, live writer."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from reference.audit.event import AuditEvent
from reference.audit.journal import Journal, JournalConfig
from reference.audit.journal_format import list_segments, read_segment
from reference.audit.recovery import (
    CHECKPOINT_FILE,
    Checkpoint,
    RecoveryConfig,
    RecoveryJob,
    read_checkpoint,
    write_checkpoint,
)
from reference.audit.recovery_files import (
    count_unreplayed,
    segment_identity,
    segments_without_live_writer,
    try_lock,
)
from reference.audit.store import AuditStore
from reference.clock import SYSTEM_CLOCK


def _offline_store() -> AuditStore:
    """A store whose engine is never used (these tests must not touch a database)."""
    return AuditStore(create_async_engine("postgresql+psycopg://nobody@127.0.0.1:1/none"))


async def _journal(directory: Path, segment_bytes: int = 4096) -> Journal:
    journal = Journal(
        JournalConfig(directory, segment_max_bytes=segment_bytes, fsync=False), SYSTEM_CLOCK
    )
    await journal.open()
    return journal


def _event(i: int) -> bytes:
    return AuditEvent.new("a", "update", "e", str(i), {"i": i}).to_json_bytes()


def test_checkpoint_round_trip_and_mode(tmp_path: Path) -> None:
    """A written checkpoint reads back equal, is private (0600) and leaves no temp file."""
    checkpoint = Checkpoint("seg-00000003.journal", 4096, "ab" * 16)
    write_checkpoint(tmp_path, checkpoint)
    assert read_checkpoint(tmp_path) == checkpoint
    assert stat.S_IMODE((tmp_path / CHECKPOINT_FILE).stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_FILE]


def test_checkpoint_replace_failure_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the rename never happens (a crash), the previous checkpoint is intact."""
    old = Checkpoint("seg-00000001.journal", 100, "0" * 32)
    write_checkpoint(tmp_path, old)

    def crash(src: object, dst: object) -> None:
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        write_checkpoint(tmp_path, Checkpoint("seg-00000001.journal", 999, "0" * 32))
    monkeypatch.undo()
    assert read_checkpoint(tmp_path) == old
    assert not (tmp_path / f"{CHECKPOINT_FILE}.tmp").exists()


def test_checkpoint_leftover_temp_file_is_ignored(tmp_path: Path) -> None:
    """A torn temporary file from a crash mid-write does not affect the checkpoint."""
    write_checkpoint(tmp_path, Checkpoint("seg-00000002.journal", 7, "1" * 32))
    (tmp_path / f"{CHECKPOINT_FILE}.tmp").write_bytes(b'{"segment": "seg-0')
    assert read_checkpoint(tmp_path) == Checkpoint("seg-00000002.journal", 7, "1" * 32)


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"segment": "x"}', b"[1, 2]"])
def test_unreadable_checkpoint_means_start_over(tmp_path: Path, content: bytes) -> None:
    """A garbled checkpoint is ignored (replay from the start, which the key makes safe)."""
    (tmp_path / CHECKPOINT_FILE).write_bytes(content)
    assert read_checkpoint(tmp_path) is None


def test_clearing_the_checkpoint_removes_it(tmp_path: Path) -> None:
    """Writing None removes the file; doing it twice is fine."""
    write_checkpoint(tmp_path, Checkpoint("seg-00000001.journal", 1, ""))
    write_checkpoint(tmp_path, None)
    write_checkpoint(tmp_path, None)
    assert read_checkpoint(tmp_path) is None
    assert not (tmp_path / CHECKPOINT_FILE).exists()


def test_recovery_lock_excludes_a_second_holder(tmp_path: Path) -> None:
    """The flock is exclusive across file descriptors, and released on close."""
    first = try_lock(tmp_path)
    assert first is not None
    assert try_lock(tmp_path) is None
    os.close(first)
    again = try_lock(tmp_path)
    assert again is not None
    os.close(again)


async def test_busy_run_returns_at_once_without_replaying(tmp_path: Path) -> None:
    """While the lock is held, run_once reports busy, replays nothing, counts the backlog."""
    journal = await _journal(tmp_path)
    for i in range(10):
        await journal.append(_event(i))
    await journal.close()
    held = try_lock(tmp_path)
    assert held is not None
    try:
        result = await RecoveryJob(RecoveryConfig(tmp_path), _offline_store()).run_once()
    finally:
        os.close(held)
    assert result.busy and result.replayed == 0 and result.remaining == 10
    assert sum(len(read_segment(p).records) for _, p in list_segments(tmp_path)) == 10


async def test_backlog_counts_records_past_the_checkpoint(tmp_path: Path) -> None:
    """backlog() = intact records not yet replayed, honouring the checkpoint's offset."""
    journal = await _journal(tmp_path, 1024 * 1024)
    for i in range(10):
        await journal.append(_event(i))
    await journal.close()
    [(_, segment)] = list_segments(tmp_path)
    scan = read_segment(segment)
    job = RecoveryJob(RecoveryConfig(tmp_path), _offline_store())
    assert await job.backlog() == 10
    write_checkpoint(
        tmp_path, Checkpoint(segment.name, scan.records[3].end, segment_identity(scan))
    )
    assert await job.backlog() == 6
    write_checkpoint(tmp_path, Checkpoint(segment.name, scan.records[3].end, "f" * 32))
    assert await job.backlog() == 10  # a checkpoint for another segment of that name


async def test_live_writers_newest_segment_is_not_taken(tmp_path: Path) -> None:
    """Without the Journal object, the newest segment is skipped while a writer holds it."""
    journal = await _journal(tmp_path)
    try:
        for i in range(80):
            await journal.append(_event(i))
        segments = [p for _, p in list_segments(tmp_path)]
        assert len(segments) >= 3
        assert segments_without_live_writer(tmp_path) == segments[:-1]
        assert journal.active_segment == segments[-1]
    finally:
        await journal.close()
    assert segments_without_live_writer(tmp_path) == segments


def test_no_directory_no_segments(tmp_path: Path) -> None:
    """A journal directory that does not exist yet has nothing to replay."""
    assert segments_without_live_writer(tmp_path / "absent") == []


def test_job_rejects_bad_parameters(tmp_path: Path) -> None:
    """A zero batch or interval is refused up front."""
    with pytest.raises(ValueError):
        RecoveryJob(RecoveryConfig(tmp_path, batch_size=0), _offline_store())
    with pytest.raises(ValueError):
        RecoveryJob(RecoveryConfig(tmp_path, interval_s=0), _offline_store())


async def test_backlog_memo_follows_growing_and_removed_segments(tmp_path: Path) -> None:
    """The remembered per-segment counts are refreshed when a segment grows, and forgotten
    when it is removed: the backlog stays exact however often it is asked."""
    journal = Journal(JournalConfig(tmp_path, fsync=False), SYSTEM_CLOCK)
    await journal.open()
    memo: dict[str, object] = {}
    for n in range(3):
        await journal.append(AuditEvent.new("a", "b", "c", str(n)).to_json_bytes())
    assert count_unreplayed(tmp_path, memo) == 3  # type: ignore[arg-type]
    assert count_unreplayed(tmp_path, memo) == 3  # type: ignore[arg-type]
    await journal.append(AuditEvent.new("a", "b", "c", "3").to_json_bytes())
    assert count_unreplayed(tmp_path, memo) == 4  # type: ignore[arg-type]
    sealed = await journal.rotate()
    await journal.close()
    assert sealed is not None
    sealed.unlink()
    assert count_unreplayed(tmp_path, memo) == 0  # type: ignore[arg-type]
    assert sealed.name not in memo
