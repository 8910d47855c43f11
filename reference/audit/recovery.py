"""The recovery job: replays sealed journal segments into `audit_log`, then removes them.

One run (`run_once`):

1. takes an exclusive, non-blocking `flock` on ``<journal dir>/.recovery.lock``; if another
   run holds it (in this process or another), returns at once with `busy=True` and
   `replayed=0` (that other run is doing the work);
2. seals the live journal (`rotate`) when one is given, so every record acknowledged so
   far is in a sealed segment, and reads only sealed segments. Without a journal (a
   crashed writer's directory), every segment is taken, except the newest one while
   another process holds the journal's writer lock;
3. replays segments oldest first, in batches (a typed COPY, `reference.audit.drain`: into
   the table directly, or through a staging table with ON CONFLICT DO NOTHING when a row
   is already there), reading the next segment meanwhile (at most two segments in
   memory); after each committed batch, records the progress (segment,
   byte offset, identity of the segment) in a checkpoint file replaced atomically (write a
   temporary file, fsync, rename, fsync the directory). A checkpoint that cannot be written
   (a full disk) does not stop the run: it only means more replay after a crash;
4. deletes each fully replayed segment before the next one (oldest first), quarantining
   corrupt regions and records that are not valid events (counted, never fatal; a segment
   whose bad bytes could not be copied out is kept);
5. re-drives the queue (`QueueWorker.drain`: pending, stuck and new entries) when a worker
   is given.

A crash between a commit and its checkpoint replays that batch again; the primary key
absorbs it. The checkpoint names the segment and the hash of its first record, so a
segment re-created with the same name after its namesake was deleted is not skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reference.audit._fs import atomic_replace, fsync_dir
from reference.audit.chain_anchor import ChainAnchor, write_anchor
from reference.audit.chain_check import chain_verdict
from reference.audit.drain import UndecodableRecord
from reference.audit.event import AuditEvent, InvalidAuditEvent
from reference.audit.journal import Journal, JournalWriteError, writer_alive
from reference.audit.journal_format import (
    ZERO_MAC,
    CorruptRegion,
    JournalRecord,
    RecordIndex,
    SegmentScan,
    list_segments,
    quarantine,
    quarantine_path,
    quarantine_segment,
    read_segment,
    segment_sequence,
)
from reference.audit.queue import QueueWorker
from reference.audit.store import POISON_ERRORS, AuditStore
from reference.clock import SYSTEM_CLOCK, Clock
from reference.metrics import ResilienceMetrics

__all__ = [
    "CHECKPOINT_FILE",
    "RECOVERY_LOCK_FILE",
    "Checkpoint",
    "RecoveryConfig",
    "RecoveryJob",
    "RecoveryResult",
    "read_checkpoint",
    "write_checkpoint",
]

CHECKPOINT_FILE = "recovery.checkpoint"
RECOVERY_LOCK_FILE = ".recovery.lock"
_log = logging.getLogger(__name__)
_REPLAY_POISON = (*POISON_ERRORS, UndecodableRecord)
"""A batch to validate record by record: the database rejected a value, or a record is
not an event object (found while encoding the COPY rows)."""


@dataclass(frozen=True)
class Checkpoint:
    """Bytes of `segment` already replayed; `first_record` identifies that segment."""

    segment: str
    offset: int
    first_record: str


@dataclass(frozen=True)
class RecoveryResult:
    """What one run did: records replayed (committed), rows new among them, records still
    waiting in segments, regions quarantined, queue entries re-driven."""

    replayed: int
    remaining: int
    quarantined: int
    inserted: int = 0
    redriven: int = 0
    busy: bool = False


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


@dataclass(frozen=True, slots=True)
class RecoveryConfig:
    """Where the journal is, how often to replay it, and the replay's bounds."""

    directory: Path
    interval_s: float = 300.0
    batch_size: int = 20000
    batch_timeout_s: float = 30.0
    redrive_timeout_s: float = 10.0
    hmac_key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.interval_s <= 0:
            raise ValueError("batch_size must be >= 1 and interval_s > 0")


class RecoveryJob:
    """Replays the journal in `config.directory` into `store`; see the module docstring.

    `journal` (this process's writer, rolled before a run) and `worker` (whose pending
    queue entries a run re-drives) are optional.
    """

    def __init__(
        self,
        config: RecoveryConfig,
        store: AuditStore,
        *,
        journal: Journal | None = None,
        worker: QueueWorker | None = None,
        clock: Clock = SYSTEM_CLOCK,
        metrics: ResilienceMetrics | None = None,
    ) -> None:
        self.config = config
        self.directory = config.directory
        self.store = store
        self.journal = journal
        self.worker = worker
        self.interval_s = config.interval_s
        self.batch_size = config.batch_size
        self.batch_timeout_s = config.batch_timeout_s
        self.redrive_timeout_s = config.redrive_timeout_s
        self._clock = clock
        self._metrics = metrics
        self._scans: dict[str, _ScanSummary] = {}
        """Per segment file, what `backlog` learnt from reading it (re-read on change)."""

    async def run_once(self) -> RecoveryResult:
        """One run; raises when the database fails mid-way (progress so far is kept)."""
        started = self._clock.monotonic()
        lock_fd = await asyncio.to_thread(_try_lock, self.directory)
        if lock_fd is None:
            return RecoveryResult(0, await self.backlog(), 0, busy=True)
        totals = _Totals()
        reads: list[asyncio.Task[SegmentScan]] = []
        try:
            segments = await self._sealed_segments()
            # Read the next segment (in a thread) while the database takes this one; never
            # more than those two in memory, whatever the backlog.
            key = self.config.hmac_key
            reads = [_read(s, key) for s in segments[:1]]
            for number, segment in enumerate(segments):
                current = reads.pop(0)
                if number + 1 < len(segments):
                    reads.append(_read(segments[number + 1], key))
                if not await self._replay_segment(segment, totals, current):
                    break
                del current  # replayed: let its records go
        finally:
            for read in reads:
                read.cancel()
            await asyncio.gather(*reads, return_exceptions=True)
            os.close(lock_fd)
            if self._metrics is not None:
                self._metrics.record_recovery_replayed(totals.replayed)
                self._metrics.record_journal_corrupt(totals.quarantined)
        redriven = await self._redrive()
        remaining = await self.backlog()
        _log.info(
            "recovery: replayed %d (%d new), quarantined %d, re-drove %d, %d remaining, %.2fs",
            totals.replayed,
            totals.inserted,
            totals.quarantined,
            redriven,
            remaining,
            self._clock.monotonic() - started,
        )
        return RecoveryResult(
            totals.replayed, remaining, totals.quarantined, totals.inserted, redriven
        )

    async def run_forever(self) -> None:
        """`run_once` every `interval_s` until cancelled; a failed run is logged and retried."""
        while True:
            try:
                await self.run_once()
            except Exception as exc:
                _log.warning("recovery run failed: %r", exc)
            await self._clock.sleep(self.interval_s)

    async def backlog(self) -> int:
        """Intact records in segments not yet replayed (the live segment included)."""
        count = await asyncio.to_thread(_count_unreplayed, self.directory, self._scans)
        if self._metrics is not None:
            self._metrics.set_journal_backlog(count)
        return count

    def save_checkpoint(self, checkpoint: Checkpoint | None) -> None:
        """Persist progress (runs on a worker thread; a hook for crash tests)."""
        write_checkpoint(self.directory, checkpoint)

    # -- steps ----------------------------------------------------------------------------

    async def _sealed_segments(self) -> list[Path]:
        journal = self.journal
        if journal is not None:
            try:
                async with asyncio.timeout(self.batch_timeout_s):
                    await journal.rotate()
            except JournalWriteError as exc:  # not open: its segments are all sealed
                _log.info("recovery: journal not rotated (%s)", exc)
            except TimeoutError:  # a stuck disk: replay what was sealed before
                _log.warning("recovery: journal rotation timed out")
            return journal.sealed_segments()
        return await asyncio.to_thread(_segments_without_live_writer, self.directory)

    async def _replay_segment(
        self, path: Path, totals: _Totals, read: Awaitable[SegmentScan] | None = None
    ) -> bool:
        """Replay and delete one segment; False when it must stay (stop the run there)."""
        try:
            scan = await (read or asyncio.to_thread(read_segment, path, self.config.hmac_key))
        except FileNotFoundError:
            return True  # deleted by a run that just finished
        except OSError as exc:
            _log.error("recovery: cannot read %s: %s", path.name, exc)
            return False
        if scan.breaks:  # records to look through: off the event loop
            verdict = await asyncio.to_thread(chain_verdict, scan, self.directory)
        else:  # one small file read (the anchor), like the checkpoint's below
            verdict = chain_verdict(scan, self.directory)
        if verdict.reports:
            self._chain_broken(scan, verdict.reports)
        if verdict.forged:
            return await asyncio.to_thread(self._set_aside, path)
        if scan.corrupt and not await self._quarantine(scan, scan.corrupt, totals):
            return False
        if verdict.bad_records and not await self._quarantine(scan, verdict.bad_records, totals):
            return False
        identity = _identity(scan)
        checkpoint = read_checkpoint(self.directory)
        start = 0
        if checkpoint and (checkpoint.segment, checkpoint.first_record) == (path.name, identity):
            start = checkpoint.offset
        rejected = {region.offset for region in verdict.bad_records}
        chosen = _to_replay(scan.records, start, rejected)
        # resumed after a crash: the first batch may be in the table already
        can_conflict = start > 0
        last: Checkpoint | None = None
        for first in range(0, len(chosen), self.batch_size):
            if last is not None:
                await self._checkpoint(last)
            batch = chosen[first : first + self.batch_size]
            if not await self._replay_batch(scan, batch, totals, can_conflict):
                return False
            can_conflict = False
            last = Checkpoint(path.name, scan.records[batch[-1]].end, identity)
        # the last checkpoint, the anchor, the removal, the cleared checkpoint: in that
        # order, in one trip to a worker thread
        await asyncio.to_thread(self._finish_segment, scan, last)
        return True

    def _finish_segment(self, scan: SegmentScan, last: Checkpoint | None) -> None:
        """After the segment's last commit (on a worker thread): checkpoint it, record it as
        the chain's anchor, delete it, clear the checkpoint."""
        if last is not None:
            self._save_progress(last)
        self._anchor(scan)
        _remove_segment(scan.path)
        self._save_progress(None)

    def _chain_broken(self, scan: SegmentScan, reports: Sequence[str]) -> None:
        for report in reports:
            _log.error("recovery: HMAC chain broken at %s: %s", scan.path.name, report)
        if self._metrics is not None:
            self._metrics.record_journal_chain_break()

    def _set_aside(self, path: Path) -> bool:
        """A segment that fails the chain as a whole: copied to quarantine, then removed
        (nothing of it replayed). False (keep it, stop) when the copy failed."""
        if not quarantine_segment(path, self.directory, "chain"):
            return False
        _remove_segment(path)
        return True

    def _anchor(self, scan: SegmentScan) -> None:
        """Record the replayed segment as the chain's new anchor (a failure only weakens
        the next check, like a lost checkpoint)."""
        sequence = scan.header.sequence if scan.header else segment_sequence(scan.path)
        if sequence is None:
            return
        try:
            write_anchor(self.directory, ChainAnchor(sequence, scan.last_mac or ZERO_MAC))
        except OSError as exc:
            _log.warning("recovery: chain anchor not saved (%s)", exc)

    async def _checkpoint(self, checkpoint: Checkpoint | None) -> None:
        """Save progress on a worker thread (see `_save_progress`)."""
        await asyncio.to_thread(self._save_progress, checkpoint)

    def _save_progress(self, checkpoint: Checkpoint | None) -> None:
        """Save progress; a failure (a full disk) only means replaying more next time.

        Going on matters: on a full disk, deleting replayed segments is what frees space.
        """
        try:
            self.save_checkpoint(checkpoint)
        except OSError as exc:
            _log.warning("recovery: checkpoint not saved (%s); continuing", exc)

    async def _replay_batch(
        self,
        scan: SegmentScan,
        batch: Sequence[int],
        totals: _Totals,
        can_conflict: bool = False,
    ) -> bool:
        """Replay the records at positions `batch` of `scan` in one transaction."""
        timeout = self.batch_timeout_s
        try:
            inserted = await self.store.copy_replay_json(
                _payloads(scan.records, batch), "file", can_conflict=can_conflict, timeout_s=timeout
            )
        except _REPLAY_POISON as exc:
            if getattr(exc, "connection_invalidated", False):
                raise
            _log.warning("recovery: %s batch rejected (%s); validating", scan.path.name, exc)
            events, bad = _validate([scan.records[i] for i in batch])
            if bad and not await self._quarantine(scan, bad, totals):
                return False
            inserted = await self.store.copy_replay(events, "file", timeout_s=timeout)
        totals.replayed += len(batch)
        totals.inserted += inserted
        return True

    async def _quarantine(
        self, scan: SegmentScan, regions: Sequence[CorruptRegion], totals: _Totals
    ) -> bool:
        """Copy `regions` aside; False if any could not be saved (keep the segment)."""
        target = SegmentScan(scan.path, scan.size, scan.header, (), tuple(regions))
        totals.quarantined += await asyncio.to_thread(quarantine, target, self.directory)
        missing = [r for r in regions if not quarantine_path(self.directory, scan, r).exists()]
        if missing:
            _log.error("recovery: %d regions of %s not quarantined", len(missing), scan.path.name)
        return not missing

    async def _redrive(self) -> int:
        if self.worker is None:
            return 0
        try:
            return await self.worker.drain(self.redrive_timeout_s)
        except Exception as exc:  # TimeoutError included: a backlog is still there
            _log.warning("recovery: queue re-drive incomplete: %r", exc)
            return 0


@dataclass
class _Totals:
    replayed: int = 0
    inserted: int = 0
    quarantined: int = 0


def _read(path: Path, key: bytes | None) -> asyncio.Task[SegmentScan]:
    """Read `path` (checking MACs with `key`) in a thread, as a task (so it starts now)."""
    return asyncio.create_task(asyncio.to_thread(read_segment, path, key))


def _try_lock(directory: Path) -> int | None:
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


def _segments_without_live_writer(directory: Path) -> list[Path]:
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
class _ScanSummary:
    """A segment's record offsets and identity, valid while its size and mtime hold."""

    size: int
    mtime_ns: int
    identity: str
    offsets: tuple[int, ...]


def _count_unreplayed(directory: Path, memo: dict[str, _ScanSummary] | None = None) -> int:
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
                summary = _ScanSummary(
                    stat.st_size,
                    stat.st_mtime_ns,
                    _identity(scan),
                    tuple(_offsets(scan.records)),
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


def _identity(scan: SegmentScan) -> str:
    """A segment's identity: the hash of its first intact record (event ids are unique)."""
    if not scan.records:
        return ""
    return hashlib.sha256(scan.records[0].payload).hexdigest()[:32]


def _to_replay(records: Sequence[JournalRecord], start: int, rejected: set[int]) -> Sequence[int]:
    """Positions of the records to replay: from byte `start` on, none of `rejected`."""
    if not start and not rejected:
        return range(len(records))
    offsets = _offsets(records)
    return [i for i, o in enumerate(offsets) if o >= start and o not in rejected]


def _offsets(records: Sequence[JournalRecord]) -> Sequence[int]:
    """Where each record starts (without making the records of a `RecordIndex`)."""
    if isinstance(records, RecordIndex):
        return records.offsets()
    return [r.offset for r in records]


def _payloads(records: Sequence[JournalRecord], positions: Sequence[int]) -> list[bytes]:
    """The payloads of the records at `positions` (a range without making the records)."""
    if isinstance(records, RecordIndex):
        return records.payloads(positions)
    return [records[i].payload for i in positions]


def _validate(batch: Sequence[JournalRecord]) -> tuple[list[AuditEvent], list[CorruptRegion]]:
    events: list[AuditEvent] = []
    bad: list[CorruptRegion] = []
    for record in batch:
        try:
            events.append(AuditEvent.from_json_bytes(record.payload))
        except InvalidAuditEvent as exc:
            bad.append(CorruptRegion(record.offset, record.end - record.offset, str(exc)))
    return events, bad


def _remove_segment(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync_dir(path.parent)
