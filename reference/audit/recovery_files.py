"""The recovery job's files: the checkpoint, the run lock, the backlog count, removal.

`RecoveryJob` (`reference.audit.recovery`) uses these; they hold no state of their own.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from reference.audit._fs import atomic_replace, fsync_dir
from reference.audit.journal import writer_alive
from reference.audit.journal_format import SegmentScan, list_segments, read_segment
from reference.audit.recovery_records import record_offsets

__all__ = [
    "CHECKPOINT_FILE",
    "RECOVERY_LOCK_FILE",
    "Checkpoint",
    "ScanSummary",
    "count_unreplayed",
    "read_checkpoint",
    "remove_segment",
    "segment_identity",
    "segments_without_live_writer",
    "try_lock",
    "write_checkpoint",
]

CHECKPOINT_FILE = "recovery.checkpoint"
RECOVERY_LOCK_FILE = ".recovery.lock"
_log = logging.getLogger("reference.audit.recovery")


@dataclass(frozen=True)
class Checkpoint:
    """Bytes of `segment` already replayed; `first_record` identifies that segment."""

    segment: str
    offset: int
    first_record: str


def read_checkpoint(directory: Path) -> Checkpoint | None:
    """The saved checkpoint, or None when absent or unreadable (then replay from the start)."""
    path = directory / CHECKPOINT_FILE
    try:
        data = json.loads(path.read_bytes())
        return Checkpoint(str(data["segment"]), int(data["offset"]), str(data["first_record"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _log.warning("recovery: ignoring unreadable checkpoint %s: %s", path, exc)
        return None


def write_checkpoint(directory: Path, checkpoint: Checkpoint | None) -> None:
    """Atomically replace the checkpoint (None removes it); durable when this returns."""
    path = directory / CHECKPOINT_FILE
    if checkpoint is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            fsync_dir(directory)
        return
    data = json.dumps(
        {
            "segment": checkpoint.segment,
            "offset": checkpoint.offset,
            "first_record": checkpoint.first_record,
        }
    ).encode()
    atomic_replace(path, data)


def try_lock(directory: Path) -> int | None:
    """An fd holding the recovery lock, or None when another run holds it."""
    if not directory.is_dir():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(directory / RECOVERY_LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def segments_without_live_writer(directory: Path) -> list[Path]:
    """All segments, minus the newest while some process holds the journal's writer lock.

    Listed first, probed second: a writer that starts after the listing only ever writes
    to a newer segment than any listed.
    """
    try:
        segments = [path for _, path in list_segments(directory)]
    except FileNotFoundError:
        return []
    if segments and writer_alive(directory):
        segments.pop()
    return segments


@dataclass(frozen=True)
class ScanSummary:
    """A segment's record offsets and identity, valid while its size and mtime hold."""

    size: int
    mtime_ns: int
    identity: str
    offsets: tuple[int, ...]


def count_unreplayed(directory: Path, memo: dict[str, ScanSummary] | None = None) -> int:
    """Intact records not yet replayed. `memo` spares re-reading unchanged segments: the
    backlog is asked for by every /metrics scrape and alert evaluation."""
    memo = {} if memo is None else memo
    try:
        segments = list_segments(directory)
    except FileNotFoundError:
        return 0
    checkpoint = read_checkpoint(directory)
    total = 0
    seen = set()
    for _, path in segments:
        try:
            stat = path.stat()
            summary = memo.get(path.name)
            if summary is None or (summary.size, summary.mtime_ns) != (
                stat.st_size,
                stat.st_mtime_ns,
            ):
                scan = read_segment(path)
                summary = ScanSummary(
                    stat.st_size,
                    stat.st_mtime_ns,
                    segment_identity(scan),
                    tuple(record_offsets(scan.records)),
                )
                memo[path.name] = summary
        except OSError:
            continue
        seen.add(path.name)
        offsets = summary.offsets
        if checkpoint and (checkpoint.segment, checkpoint.first_record) == (
            path.name,
            summary.identity,
        ):
            offsets = tuple(o for o in offsets if o >= checkpoint.offset)
        total += len(offsets)
    for gone in set(memo) - seen:
        del memo[gone]
    return total


def segment_identity(scan: SegmentScan) -> str:
    """A segment's identity: the hash of its first intact record (event ids are unique)."""
    if not scan.records:
        return ""
    return hashlib.sha256(scan.records[0].payload).hexdigest()[:32]


def remove_segment(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync_dir(path.parent)
