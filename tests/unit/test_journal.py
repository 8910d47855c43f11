"""Journal writer: durability, group commit, rotation, modes, failures, cancellation."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import stat
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.audit.event import AuditEvent
from reference.audit.journal import Journal, JournalConfig, JournalWriteError
from reference.audit.journal_cli import verify_journal
from reference.audit.journal_format import list_segments, read_segment
from reference.audit.journal_metrics import JournalCounters
from reference.clock import FakeClock, SystemClock
from tests.strategies import audit_events

KEY = b"secret-key-0123456789abcdef"


def read_all(directory: Path, key: bytes | None = None) -> list[bytes]:
    """Every intact payload in the journal, in segment order."""
    out: list[bytes] = []
    for _, path in list_segments(directory):
        out.extend(record.payload for record in read_segment(path, key).records)
    return out


async def opened(
    directory: Path, counters: JournalCounters | None = None, **options: object
) -> Journal:
    """An open journal on `directory` with real fsync unless told otherwise."""
    config = JournalConfig(directory, **options)  # type: ignore[arg-type]
    journal = Journal(config, SystemClock(), counters)
    await journal.open()
    return journal


@settings(max_examples=25, deadline=None)
@given(st.lists(audit_events, min_size=1, max_size=12), st.booleans())
def test_events_round_trip_through_journal(events: list[AuditEvent], keyed: bool) -> None:
    """Arbitrary events appended concurrently read back equal, and the journal verifies."""

    async def scenario(directory: Path) -> None:
        journal = await opened(directory, hmac_key=KEY if keyed else None)
        await asyncio.gather(*(journal.append(e.to_json_bytes()) for e in events))
        await journal.close()

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "journal"
        asyncio.run(scenario(directory))
        back = [AuditEvent.from_json_bytes(raw) for raw in read_all(directory)]
        assert back == events
        assert verify_journal(directory, KEY if keyed else None).ok


async def test_group_commit_shares_fsyncs(tmp_path: Path) -> None:
    """256 concurrent appends all succeed with far fewer data fsyncs than records."""
    counters = JournalCounters()
    journal = await opened(tmp_path, counters, hmac_key=KEY)
    payloads = [f"record-{i}".encode() for i in range(256)]
    await asyncio.gather(*(journal.append(p) for p in payloads))
    await journal.close()
    assert counters.appended == 256
    assert 1 <= counters.fsyncs <= 256 // 8
    assert sorted(read_all(tmp_path)) == sorted(payloads)
    assert verify_journal(tmp_path, KEY).ok


async def test_append_waits_for_fsync_and_loop_stays_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """append is not acknowledged before fsync returns, and the loop runs meanwhile."""
    journal = await opened(tmp_path)
    await journal.append(b"warm-up")  # the segment exists; the next fsync is the data's
    gate = threading.Event()
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        gate.wait(5)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    task = asyncio.create_task(journal.append(b"held"))
    ticks = 0
    for _ in range(5):
        await asyncio.sleep(0.01)
        ticks += 1
    assert ticks == 5 and not task.done()
    gate.set()
    await asyncio.wait_for(task, 5)
    monkeypatch.setattr(os, "fsync", real_fsync)
    await journal.close()
    assert read_all(tmp_path) == [b"warm-up", b"held"]


@pytest.mark.parametrize("failing", ["fsync", "write"])
async def test_io_error_fails_whole_batch_then_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """A failed write or fsync fails every waiter of the batch; later appends succeed
    in a new segment and the HMAC chain still verifies."""
    counters = JournalCounters()
    journal = await opened(tmp_path, counters, hmac_key=KEY)
    await journal.append(b"before")

    def broken(*_args: object) -> int:
        raise OSError(errno.ENOSPC if failing == "write" else errno.EIO, "injected")

    monkeypatch.setattr(os, failing, broken)
    results = await asyncio.gather(
        *(journal.append(f"doomed-{i}".encode()) for i in range(32)), return_exceptions=True
    )
    monkeypatch.undo()
    assert all(isinstance(r, JournalWriteError) for r in results)
    assert counters.failed == 32 and counters.appended == 1
    await journal.append(b"after")
    await journal.close()
    assert counters.segments == 2
    assert read_all(tmp_path) == [b"before", b"after"]  # the failed tail was cut back
    assert verify_journal(tmp_path, KEY).ok


async def test_unwritable_directory_fails_open(tmp_path: Path) -> None:
    """A directory path under a regular file cannot be opened: JournalWriteError."""
    (tmp_path / "plain-file").write_bytes(b"x")
    journal = Journal(JournalConfig(tmp_path / "plain-file" / "journal"), SystemClock())
    with pytest.raises(JournalWriteError):
        await journal.open()
    with pytest.raises(JournalWriteError):
        await journal.append(b"never")


async def test_directory_replaced_by_file_fails_appends_until_restored(tmp_path: Path) -> None:
    """If the directory disappears under the writer, appends fail (never a false success)
    even though the old file descriptor still accepts writes; restoring it recovers."""
    parent = tmp_path / "parent"
    journal = await opened(parent / "journal")
    await journal.append(b"first")
    shutil.rmtree(parent)
    parent.write_bytes(b"now a regular file")
    for attempt in range(2):
        with pytest.raises(JournalWriteError):
            await journal.append(f"lost-{attempt}".encode())
    parent.unlink()
    await journal.append(b"recovered")
    await journal.close()
    assert read_all(parent / "journal") == [b"recovered"]


async def test_modes_and_directory_fix(tmp_path: Path) -> None:
    """Segments are 0600, the directory is made 0700 even if it was wider."""
    directory = tmp_path / "journal"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    journal = await opened(directory)
    await journal.append(b"x")
    await journal.close()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for _, path in list_segments(directory):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((directory / ".lock").stat().st_mode) == 0o600


async def test_rotation_by_size_and_sealing(tmp_path: Path) -> None:
    """Segments stay within segment_max_bytes; rotate() seals the active segment."""
    journal = await opened(tmp_path, segment_max_bytes=1024, hmac_key=KEY, fsync=False)
    payloads = [bytes([65 + i % 26]) * 100 for i in range(40)]
    for payload in payloads:
        await journal.append(payload)
    segments = list_segments(tmp_path)
    assert len(segments) >= 5
    assert all(path.stat().st_size <= 1024 for _, path in segments)
    active = journal.active_segment
    assert active is not None and active not in journal.sealed_segments()
    assert await journal.rotate() == active
    assert journal.active_segment is None
    assert journal.sealed_segments() == [path for _, path in segments]
    await journal.append(b"next")
    assert journal.active_segment not in journal.sealed_segments()
    await journal.close()
    assert read_all(tmp_path) == [*payloads, b"next"]
    assert verify_journal(tmp_path, KEY).ok


async def test_reopen_continues_sequence_and_chain(tmp_path: Path) -> None:
    """A new run starts a fresh segment chained to the last one; a second writer is refused."""
    journal = await opened(tmp_path, hmac_key=KEY)
    await journal.append(b"run-1")
    with pytest.raises(JournalWriteError, match="locked"):
        await opened(tmp_path, hmac_key=KEY)
    await journal.close()
    journal = await opened(tmp_path, hmac_key=KEY)
    await journal.append(b"run-2")
    await journal.close()
    assert [seq for seq, _ in list_segments(tmp_path)] == [1, 2]
    assert read_all(tmp_path) == [b"run-1", b"run-2"]
    assert verify_journal(tmp_path, KEY).ok


async def test_cancelled_appenders_do_not_disturb_the_batch(tmp_path: Path) -> None:
    """Cancelling some appenders leaves the others acknowledged and the journal intact."""
    journal = await opened(tmp_path, hmac_key=KEY)
    tasks = [asyncio.create_task(journal.append(f"r-{i}".encode())) for i in range(64)]
    await asyncio.sleep(0)
    for task in tasks[::2]:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    await journal.close()
    kept = {f"r-{i}".encode() for i in range(1, 64, 2)}
    assert all(r is None for r in results[1::2])
    assert kept <= set(read_all(tmp_path))  # cancelled ones may be there too (at-least-once)
    assert verify_journal(tmp_path, KEY).ok


async def test_close_drains_and_then_refuses(tmp_path: Path) -> None:
    """close() completes pending appends; afterwards append raises; oversize is refused."""
    journal = await opened(tmp_path, fsync=False)
    tasks = [asyncio.create_task(journal.append(b"p%d" % i)) for i in range(10)]
    await asyncio.sleep(0)
    await journal.close()
    assert all(t.done() and t.exception() is None for t in tasks)
    with pytest.raises(JournalWriteError):
        await journal.append(b"late")
    assert len(read_all(tmp_path)) == 10
    other = await opened(tmp_path / "other", fsync=False)
    with pytest.raises(ValueError):
        await other.append(b"x" * (5 * 1024 * 1024))
    await other.close()


def test_config_validation() -> None:
    """Too-small segments and short keys are refused; the key never shows in repr."""
    with pytest.raises(ValueError):
        JournalConfig(Path("/tmp/x"), segment_max_bytes=10)
    with pytest.raises(ValueError):
        JournalConfig(Path("/tmp/x"), hmac_key=b"short")
    assert "secret" not in repr(JournalConfig(Path("/tmp/x"), hmac_key=KEY))
    assert FakeClock().monotonic() == 1000.0
