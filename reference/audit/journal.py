"""The journal writer: durable, group-committed appends to HMAC-chained segment files.

`append` returns only once its record is written and fsynced. Appends that arrive while
a write+fsync is in flight are batched into the next one (group commit). All blocking
I/O runs on one dedicated thread, so the event loop never blocks and writes stay ordered.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import stat
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from reference.audit._fs import fsync_dir, make_dirs, write_all
from reference.audit.chain_anchor import highest_quarantined, read_anchor
from reference.audit.journal_format import (
    HEADER_BYTES,
    MAX_RECORD_BYTES,
    MIN_HMAC_KEY_BYTES,
    ZERO_MAC,
    chain_mac,
    encode_header,
    encode_record,
    frame_size,
    list_segments,
    quarantine,
    read_segment,
    segment_name,
)
from reference.audit.journal_metrics import JournalMetrics, NullJournalMetrics
from reference.clock import Clock

log = logging.getLogger(__name__)

_T = TypeVar("_T")
MIN_SEGMENT_BYTES = 1024
LOCK_FILE = ".lock"


class JournalWriteError(Exception):
    """The record was not durably written; the caller must not report success."""


@dataclass(frozen=True)
class JournalConfig:
    """Where and how the journal writes. `fsync=False` gives up durability (tests only).
    `max_pending_bytes` bounds the records waiting for the disk (callers that gave up
    included): past it, `append` fails at once instead of queueing behind a stalled fsync."""

    directory: Path
    segment_max_bytes: int = 16 * 1024 * 1024
    hmac_key: bytes | None = field(default=None, repr=False)
    fsync: bool = True
    max_pending_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.segment_max_bytes < MIN_SEGMENT_BYTES:
            raise ValueError(f"segment_max_bytes must be at least {MIN_SEGMENT_BYTES}")
        if self.hmac_key is not None and len(self.hmac_key) < MIN_HMAC_KEY_BYTES:
            raise ValueError(f"hmac_key must be at least {MIN_HMAC_KEY_BYTES} bytes")
        if self.max_pending_bytes < MAX_RECORD_BYTES:
            raise ValueError(f"max_pending_bytes must be at least {MAX_RECORD_BYTES}")


@dataclass
class _Active:
    fd: int
    path: Path
    sequence: int
    size: int
    records: int = 0


_Waiter = tuple[bytes, "asyncio.Future[None]"]


class Journal:
    """An async, append-only, group-committed journal under one directory."""

    def __init__(
        self, config: JournalConfig, clock: Clock, metrics: JournalMetrics | None = None
    ) -> None:
        self._config = config
        self._clock = clock
        self._metrics: JournalMetrics = metrics or NullJournalMetrics()
        self._state = "new"
        self._pending: deque[_Waiter] = deque()
        self._pending_bytes = 0
        self._wakeup = asyncio.Event()
        self._io_lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        # Owned by the I/O thread (touched only under _io_lock or before/after it runs).
        self._active: _Active | None = None
        self._lock_fd: int | None = None
        self._next_sequence = 1
        self._last_mac = ZERO_MAC
        self._sealed_below = 1  # every segment with a lower sequence is sealed
        self._last_error: str | None = None

    @property
    def directory(self) -> Path:
        """The journal directory."""
        return self._config.directory

    @property
    def last_error(self) -> str | None:
        """Why the last batch failed (e.g. "[Errno 28] No space left on device"); None
        once a batch is durable again. Health reports it."""
        return self._last_error

    @property
    def active_segment(self) -> Path | None:
        """The segment currently written to, if any."""
        active = self._active
        return active.path if active else None

    async def open(self) -> None:
        """Prepare the directory (0700), take the writer lock, resume the chain.

        The last existing segment is never appended to; its torn tail, if any, is
        quarantined. The first append creates a new segment. Raises JournalWriteError.
        """
        if self._state != "new":
            raise RuntimeError(f"journal cannot be opened when {self._state}")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-io")
        try:
            await self._run(self._sync_open)
        except BaseException as exc:
            self._executor.shutdown(wait=False)
            self._state = "closed"
            if isinstance(exc, OSError):
                raise JournalWriteError(f"cannot open journal {self.directory}: {exc}") from exc
            raise
        self._state = "open"
        self._flusher = asyncio.create_task(self._flush_loop(), name="journal-flusher")
        self._flusher.add_done_callback(self._flusher_done)

    async def append(self, payload: bytes) -> None:
        """Durably append one record; returns only after it is fsynced.

        Raises JournalWriteError if it was not (the record may still have been written:
        delivery is at-least-once). Cancelling the caller never fails the batch.
        """
        if self._state != "open":
            raise JournalWriteError(f"journal is {self._state}")
        if len(payload) > MAX_RECORD_BYTES:
            raise ValueError(f"record of {len(payload)} bytes exceeds {MAX_RECORD_BYTES}")
        if self._pending_bytes + len(payload) > self._config.max_pending_bytes:
            raise JournalWriteError(
                f"journal backlog full ({self._pending_bytes} bytes waiting for the disk)"
            )
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((bytes(payload), future))
        self._pending_bytes += len(payload)
        self._wakeup.set()
        await future

    async def rotate(self) -> Path | None:
        """Seal the active segment (everything acknowledged so far); returns it, if any."""
        if self._state != "open":
            raise JournalWriteError(f"journal is {self._state}")
        async with self._io_lock:
            return await self._run(self._sync_seal)

    def sealed_segments(self) -> list[Path]:
        """Segments no longer written to, oldest first (all of them when not open)."""
        below = self._sealed_below if self._state == "open" else None
        try:
            segments = list_segments(self.directory)
        except FileNotFoundError:
            return []
        return [path for seq, path in segments if below is None or seq < below]

    async def close(self) -> None:
        """Flush what is pending, seal the active segment and release the directory."""
        if self._state in ("new", "closed", "closing"):
            self._state = "closed" if self._state == "new" else self._state
            return
        self._state = "closing"
        self._wakeup.set()
        if self._flusher is not None:
            await asyncio.wait([self._flusher])
        async with self._io_lock:
            await self._run(self._sync_close)
        self._state = "closed"
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    # -- event-loop side -------------------------------------------------------------

    async def _run(self, fn: Callable[..., _T], *args: object) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def _flush_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                async with self._io_lock:
                    batch, rotate_first = self._take_batch()
                    await self._commit(batch, rotate_first)
            if self._state != "open":
                return

    def _take_batch(self) -> tuple[list[_Waiter], bool]:
        """Pending records that fit in the active segment (at least one)."""
        with_mac = self._config.hmac_key is not None
        active = self._active
        used = active.size if active else HEADER_BYTES
        rotate_first = False
        room = self._config.segment_max_bytes - used
        if active and active.records and frame_size(len(self._pending[0][0]), with_mac) > room:
            rotate_first = True
            room = self._config.segment_max_bytes - HEADER_BYTES
        batch = [self._pop()]
        room -= frame_size(len(batch[0][0]), with_mac)
        while self._pending and frame_size(len(self._pending[0][0]), with_mac) <= room:
            item = self._pop()
            room -= frame_size(len(item[0]), with_mac)
            batch.append(item)
        return batch, rotate_first

    async def _commit(self, batch: list[_Waiter], rotate_first: bool) -> None:
        payloads = [payload for payload, _ in batch]
        started = self._clock.monotonic()
        try:
            await self._run(self._sync_commit, payloads, rotate_first)
        except BaseException as exc:
            self._last_error = str(exc) or type(exc).__name__
            self._metrics.write_failed(len(batch))
            error = JournalWriteError(f"journal write failed: {exc}")
            error.__cause__ = exc
            log.error("journal batch of %d records failed: %s", len(batch), exc)
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
            return
        self._last_error = None
        if self._config.fsync:
            self._metrics.fsynced(len(batch), self._clock.monotonic() - started)
        self._metrics.records_appended(len(batch))
        for _, future in batch:
            if not future.done():
                future.set_result(None)

    def _flusher_done(self, task: asyncio.Task[None]) -> None:
        """If the flusher stops for any reason, nobody may wait forever."""
        if self._state == "open":
            self._state = "broken"
            log.error("journal flusher stopped unexpectedly")
        while self._pending:
            _, future = self._pop()
            if not future.done():
                future.set_exception(JournalWriteError("journal flusher stopped"))

    def _pop(self) -> _Waiter:
        item = self._pending.popleft()
        self._pending_bytes -= len(item[0])
        return item

    # -- I/O thread side ---------------------------------------------------------------

    def _sync_open(self) -> None:
        self._ensure_directory()
        lock_fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise OSError(errno.EBUSY, "journal directory is locked by another writer") from None
        try:
            self._resume()
        except BaseException:
            os.close(lock_fd)
            raise
        self._lock_fd = lock_fd
        self._sealed_below = self._next_sequence

    def _resume(self) -> None:
        """Continue the previous run's chain and numbering: after the newest segment, the
        chain anchor (recovery removed everything) and anything quarantined."""
        segments = list_segments(self.directory)
        anchor = read_anchor(self.directory)
        self._next_sequence = max(
            segments[-1][0] + 1 if segments else 1,
            anchor.sequence + 1 if anchor else 1,
            highest_quarantined(self.directory) + 1,
        )
        mac = self._resume_chain(segments)
        if mac is None:
            mac = anchor.mac if anchor else ZERO_MAC
        self._last_mac = mac

    def _resume_chain(self, segments: list[tuple[int, Path]]) -> bytes | None:
        """The last MAC of the newest segment that has one (an empty or torn newest
        segment is skipped, not a reason to restart the chain at zero); quarantines the
        newest segment's torn tail. None when no segment tells."""
        for number, (_, path) in enumerate(reversed(segments)):
            try:
                scan = read_segment(path)
            except OSError as exc:
                log.warning("journal: cannot read %s to resume the chain: %s", path.name, exc)
                continue
            if number == 0 and scan.corrupt:
                log.warning("journal: %s has %d corrupt regions", path.name, len(scan.corrupt))
                self._metrics.corrupt_quarantined(quarantine(scan, self.directory))
            if scan.records:
                return scan.last_mac or ZERO_MAC
            if scan.header is not None:
                return scan.header.prev_mac
        return None

    def _ensure_directory(self) -> None:
        directory = self.directory
        if not directory.is_dir():
            if self._config.fsync:
                make_dirs(directory)  # every created ancestor fsynced into its parent
            else:
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = stat.S_IMODE(directory.stat().st_mode)
        if mode & 0o077:
            log.warning("journal directory %s had mode %o; setting 0700", directory, mode)
            directory.chmod(0o700)

    def _sync_commit(self, payloads: list[bytes], rotate_first: bool) -> None:
        if rotate_first:
            self._sync_seal()
        active = self._active or self._open_segment()
        key = self._config.hmac_key
        mac = self._last_mac
        frames = []
        for payload in payloads:
            if key is not None:
                mac = chain_mac(key, mac, payload)
                frames.append(encode_record(payload, mac))
            else:
                frames.append(encode_record(payload))
        data = b"".join(frames)
        try:
            write_all(active.fd, data)
            if self._config.fsync:
                os.fsync(active.fd)
            self._check_still_linked(active)
        except BaseException:
            self._abandon(active)
            raise
        active.size += len(data)
        active.records += len(payloads)
        self._last_mac = mac
        if active.size >= self._config.segment_max_bytes:
            self._sync_seal()

    def _open_segment(self) -> _Active:
        self._ensure_directory()
        existing = list_segments(self.directory)
        sequence = max(self._next_sequence, existing[-1][0] + 1 if existing else 1)
        self._sealed_below = sequence
        path = self.directory / segment_name(sequence)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            header = encode_header(sequence, self._last_mac, self._config.hmac_key)
            write_all(fd, header)
            if self._config.fsync:
                os.fsync(fd)
                self._fsync_dir(self.directory)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        self._next_sequence = sequence + 1
        self._active = _Active(fd, path, sequence, len(header))
        self._metrics.segment_opened(sequence)
        return self._active

    def _check_still_linked(self, active: _Active) -> None:
        """A segment deleted or replaced under us holds nothing a reader will ever see."""
        mine = os.fstat(active.fd)
        try:
            current = os.stat(active.path)
        except FileNotFoundError:
            current = None
        if mine.st_nlink == 0 or current is None or current.st_ino != mine.st_ino:
            raise OSError(errno.ENOENT, f"segment {active.path.name} was removed or replaced")

    def _abandon(self, active: _Active) -> None:
        """After a failed batch: drop its partial bytes if possible and seal the segment."""
        with contextlib.suppress(OSError):
            os.ftruncate(active.fd, active.size)
        self._sync_seal()

    def _sync_seal(self) -> Path | None:
        active, self._active = self._active, None
        if active is None:
            return None
        try:
            os.close(active.fd)
        except OSError as exc:
            log.warning("journal: closing %s failed: %s", active.path.name, exc)
        self._sealed_below = active.sequence + 1
        return active.path

    def _sync_close(self) -> None:
        self._sync_seal()
        self._sealed_below = self._next_sequence
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _fsync_dir(self, directory: Path) -> None:
        if not self._config.fsync:
            return
        fsync_dir(directory)


def writer_alive(directory: Path) -> bool:
    """Whether a journal writer holds `directory`'s lock right now (a probe, released)."""
    try:
        fd = os.open(directory / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases the probe lock
    return False
