"""Directory entries made durable (issue 12, item 8), observed through the real fsync calls.

- Opening a journal under missing directories creates each one and fsyncs every parent
  (a crash must not lose a created ancestor, and with it the journal below it).
- Quarantined copies are durable by name before their source may be deleted: the
  ``quarantine/`` directory itself is fsynced after the copies are written.

`os.fsync` is wrapped (it still syncs) to record which file or directory each call was
for, read back from /proc/self/fd.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from reference.audit.journal import Journal, JournalConfig
from reference.audit.journal_format import list_segments, quarantine, read_segment
from reference.clock import SYSTEM_CLOCK


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """Every path fsynced while the test runs, in order."""
    seen: list[Path] = []
    real = os.fsync

    def recording(fd: int) -> None:
        seen.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    yield seen


async def test_opening_a_journal_fsyncs_every_created_ancestor(
    tmp_path: Path, fsynced: list[Path]
) -> None:
    """tmp/a/b/journal created from nothing: tmp, tmp/a and tmp/a/b are each fsynced."""
    directory = tmp_path / "a" / "b" / "journal"
    journal = Journal(JournalConfig(directory), SYSTEM_CLOCK)
    await journal.open()
    await journal.close()
    for parent in (tmp_path, tmp_path / "a", tmp_path / "a" / "b"):
        assert parent in fsynced, f"{parent} not fsynced: {fsynced}"


async def test_quarantine_fsyncs_its_directory_after_the_copies(
    tmp_path: Path, fsynced: list[Path]
) -> None:
    """A segment with a torn record: its bad bytes are copied to quarantine/, and then the
    quarantine directory is fsynced (after the copy itself)."""
    journal = Journal(JournalConfig(tmp_path), SYSTEM_CLOCK)
    await journal.open()
    await journal.append(b'{"n": 1}')
    await journal.append(b'{"n": 2}')
    await journal.close()
    ((_, segment),) = list_segments(tmp_path)
    with segment.open("r+b") as f:
        f.truncate(segment.stat().st_size - 3)
    fsynced.clear()
    assert quarantine(read_segment(segment), tmp_path) == 1
    target = tmp_path / "quarantine"
    copies = [i for i, p in enumerate(fsynced) if p.parent == target]
    assert copies, fsynced
    assert target in fsynced[copies[-1] + 1 :], f"quarantine/ not fsynced after: {fsynced}"
