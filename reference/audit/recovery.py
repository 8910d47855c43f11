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
   memory). Once a segment's last rows are all sent, PostgreSQL's taking them, the commit
   and the segment's tail (step 4) run while the next segment is copied, on another
   connection; commits stay in segment order (each waits for the one before it, and
   rolls back when that one failed). After each committed batch, records
   the progress (segment, byte offset, identity of the segment) in a checkpoint file
   replaced atomically (write a temporary file, fsync, rename, fsync the directory). A
   checkpoint that cannot be written (a full disk) does not stop the run: it only means
   more replay after a crash;
4. deletes each fully replayed segment before the next one's (oldest first), quarantining
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
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reference.audit.chain_anchor import ChainAnchor, write_anchor
from reference.audit.chain_check import chain_verdict
from reference.audit.drain import UndecodableRecord
from reference.audit.journal import Journal, JournalWriteError
from reference.audit.journal_format import (
    CorruptRegion,
    SegmentScan,
    quarantine,
    quarantine_path,
    quarantine_segment,
    read_segment,
)
from reference.audit.queue import QueueWorker
from reference.audit.recovery_files import (
    CHECKPOINT_FILE,
    RECOVERY_LOCK_FILE,
    Checkpoint,
    ScanSummary,
    count_unreplayed,
    read_checkpoint,
    remove_segment,
    segment_identity,
    segments_without_live_writer,
    try_lock,
    write_checkpoint,
)
from reference.audit.recovery_records import (
    Payloads,
    anchor_of,
    read_after,
    to_replay,
    validate,
)
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

_log = logging.getLogger(__name__)
_REPLAY_POISON = (*POISON_ERRORS, UndecodableRecord)
"""A batch to validate record by record: the database rejected a value, or a record is
not an event object (found while encoding the COPY rows)."""


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
        self._scans: dict[str, ScanSummary] = {}
        """Per segment file, what `backlog` learnt from reading it (re-read on change)."""
        self._pending: asyncio.Task[None] | None = None
        """The previous segment's commit and tail, running while the next one is copied."""
        self._pending_anchor: ChainAnchor | None = None
        """The anchor that tail writes (the next segment's chain is checked against it)."""

    async def run_once(self) -> RecoveryResult:
        """One run; raises when the database fails mid-way (progress so far is kept)."""
        started = self._clock.monotonic()
        lock_fd = await asyncio.to_thread(try_lock, self.directory)
        if lock_fd is None:
            return RecoveryResult(0, await self.backlog(), 0, busy=True)
        totals = _Totals()
        reads: list[asyncio.Task[SegmentScan]] = []
        try:
            segments = await self._sealed_segments()
            # Read the next segment (in a thread) while the database takes this one; never
            # more than those two in memory, whatever the backlog.
            key = self.config.hmac_key
            reads = [read_after(s, key) for s in segments[:1]]
            try:
                for number, segment in enumerate(segments):
                    current = reads.pop(0)
                    if number + 1 < len(segments):  # once the previous segment committed
                        reads.append(read_after(segments[number + 1], key, self._pending))
                    if not await self._replay_segment(segment, totals, current):
                        break
                    del current  # replayed: let its records go
                await self._settle()  # the last segment's commit and tail
            except (_SegmentKept, _PreviousFailed) as exc:
                cause: BaseException = exc
                while isinstance(cause, _PreviousFailed):
                    cause = cause.original
                if not isinstance(cause, _SegmentKept):
                    raise cause from None
                # else: a segment must stay; the run stops there
        except asyncio.CancelledError:
            await self._end_pending(cancel=True)
            raise
        finally:
            for read in reads:
                read.cancel()
            await asyncio.gather(*reads, return_exceptions=True)
            await self._end_pending(cancel=False)
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
        count = await asyncio.to_thread(count_unreplayed, self.directory, self._scans)
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
        return await asyncio.to_thread(segments_without_live_writer, self.directory)

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
        # the previous segment's anchor may not be on disk yet: its tail may still run
        anchor = self._pending_anchor if self._pending is not None else None
        if scan.breaks:  # records to look through: off the event loop
            verdict = await asyncio.to_thread(chain_verdict, scan, self.directory, anchor)
        else:  # one small file read (the anchor), like the checkpoint's below
            verdict = chain_verdict(scan, self.directory, anchor)
        if verdict.reports:
            self._chain_broken(scan, verdict.reports)
        if verdict.forged:
            return await asyncio.to_thread(self._set_aside, path)
        if scan.corrupt and not await self._quarantine(scan, scan.corrupt, totals):
            return False
        if verdict.bad_records and not await self._quarantine(scan, verdict.bad_records, totals):
            return False
        identity = segment_identity(scan)
        checkpoint = read_checkpoint(self.directory)
        start = 0
        if checkpoint and (checkpoint.segment, checkpoint.first_record) == (path.name, identity):
            start = checkpoint.offset
        rejected = {region.offset for region in verdict.bad_records}
        chosen = to_replay(scan.records, start, rejected)
        # resumed after a crash: the first batch may be in the table already
        can_conflict = start > 0
        last: Checkpoint | None = None
        for first in range(0, len(chosen), self.batch_size):
            if last is not None:
                await self._settle()  # its tail writes the checkpoint file too
                await self._checkpoint(last)
            batch = chosen[first : first + self.batch_size]
            last = Checkpoint(path.name, scan.records[batch[-1]].end, identity)
            if first + self.batch_size >= len(chosen):
                return await self._replay_last(scan, batch, totals, can_conflict, last)
            if not await self._replay_batch(scan, batch, totals, can_conflict, self._settle):
                return False
            can_conflict = False
        await self._settle()
        await asyncio.to_thread(self._finish_segment, path, anchor_of(scan), None)
        return True

    async def _replay_last(
        self,
        scan: SegmentScan,
        batch: Sequence[int],
        totals: _Totals,
        can_conflict: bool,
        checkpoint: Checkpoint,
    ) -> bool:
        """Replay a segment's last batch; return once its rows are all sent, leaving
        PostgreSQL's taking them, the commit and the segment's tail (`_finish_segment`) to
        run while the next segment is copied. Commits stay in segment order: this one waits
        for the previous one's."""
        previous = self._pending
        copied = asyncio.Event()

        async def before_commit() -> None:
            copied.set()
            if previous is not None:
                try:
                    await previous
                except BaseException as exc:  # not this connection's: never retried
                    raise _PreviousFailed(exc) from exc

        replay = asyncio.create_task(
            self._replay_batch(scan, batch, totals, can_conflict, before_commit, copied.set)
        )
        signal = asyncio.create_task(copied.wait())
        try:
            await asyncio.wait({replay, signal}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            replay.cancel()
            await asyncio.gather(replay, return_exceptions=True)
            raise
        finally:
            signal.cancel()
        if replay.done() and not replay.result():  # raises the batch's error, if any
            return False
        anchor = self._pending_anchor = anchor_of(scan)
        self._pending = asyncio.create_task(self._complete(replay, scan.path, anchor, checkpoint))
        return True

    async def _complete(
        self,
        replay: asyncio.Task[bool],
        path: Path,
        anchor: ChainAnchor | None,
        checkpoint: Checkpoint,
    ) -> None:
        """The background half of `_replay_last`: the commit, then the segment's tail."""
        if not await replay:
            raise _SegmentKept(path.name)
        await asyncio.to_thread(self._finish_segment, path, anchor, checkpoint)

    async def _settle(self) -> None:
        """Wait for the previous segment's commit and tail; raise what failed there."""
        pending = self._pending
        if pending is not None:
            try:
                await pending
            finally:
                if self._pending is pending:
                    self._pending = None

    async def _end_pending(self, cancel: bool) -> None:
        """A run that ends on an error: the previous segment's commit in flight finishes
        (bounded by its timeout; its own error is not the run's), or, when the run is
        cancelled, is cancelled too (its segment stays, replayed again next time)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            if cancel:
                pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)

    def _finish_segment(
        self, path: Path, anchor: ChainAnchor | None, last: Checkpoint | None
    ) -> None:
        """After the segment's last commit (on a worker thread): checkpoint it, record it as
        the chain's anchor, delete it, clear the checkpoint."""
        if last is not None:
            self._save_progress(last)
        if anchor is not None:
            self._anchor(anchor)
        remove_segment(path)
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
        remove_segment(path)
        return True

    def _anchor(self, anchor: ChainAnchor) -> None:
        """Record the replayed segment as the chain's new anchor (a failure only weakens
        the next check, like a lost checkpoint)."""
        try:
            write_anchor(self.directory, anchor)
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
        before_commit: Callable[[], Awaitable[None]] | None = None,
        sent: Callable[[], None] | None = None,
    ) -> bool:
        """Replay the records at positions `batch` of `scan` in one transaction
        (`before_commit`: see `AuditStore.copy_replay_json`)."""
        timeout = self.batch_timeout_s
        try:
            inserted = await self.store.copy_replay_json(
                Payloads(scan.records, batch),
                "file",
                can_conflict=can_conflict,
                timeout_s=timeout,
                before_commit=before_commit,
                sent=sent,
            )
        except _REPLAY_POISON as exc:
            if getattr(exc, "connection_invalidated", False):
                raise
            _log.warning("recovery: %s batch rejected (%s); validating", scan.path.name, exc)
            events, bad = validate([scan.records[i] for i in batch])
            if bad and not await self._quarantine(scan, bad, totals):
                return False
            inserted = await self.store.copy_replay(
                events, "file", timeout_s=timeout, before_commit=before_commit
            )
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


class _SegmentKept(Exception):
    """A segment's last batch could not be replayed in the background: stop the run."""


class _PreviousFailed(Exception):
    """The previous segment's commit or tail failed (`original`): this batch rolls back."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(repr(original))
        self.original = original


@dataclass
class _Totals:
    replayed: int = 0
    inserted: int = 0
    quarantined: int = 0
