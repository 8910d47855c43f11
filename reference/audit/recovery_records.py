"""Which records a recovery run replays, and how it reads them (no state of its own)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import overload

from reference.audit.chain_anchor import ChainAnchor
from reference.audit.event import AuditEvent, InvalidAuditEvent
from reference.audit.journal_format import (
    ZERO_MAC,
    CorruptRegion,
    JournalRecord,
    RecordIndex,
    SegmentScan,
    read_segment,
    segment_sequence,
)

__all__ = ["Payloads", "anchor_of", "read_after", "record_offsets", "to_replay", "validate"]


def anchor_of(scan: SegmentScan) -> ChainAnchor | None:
    """The chain anchor `scan` leaves once replayed (None without a sequence)."""
    sequence = scan.header.sequence if scan.header else segment_sequence(scan.path)
    if sequence is None:
        return None
    return ChainAnchor(sequence, scan.last_mac or ZERO_MAC)


def read_after(
    path: Path, key: bytes | None, after: asyncio.Task[None] | None = None
) -> asyncio.Task[SegmentScan]:
    """Read `path` (checking MACs with `key`) in a thread, as a task started now, once
    `after` is done (whatever its outcome: that is the run's business)."""

    async def read() -> SegmentScan:
        if after is not None:
            await asyncio.wait({after})
        return await asyncio.to_thread(read_segment, path, key)

    return asyncio.create_task(read())


def to_replay(records: Sequence[JournalRecord], start: int, rejected: set[int]) -> Sequence[int]:
    """Positions of the records to replay: from byte `start` on, none of `rejected`."""
    if not start and not rejected:
        return range(len(records))
    offsets = record_offsets(records)
    return [i for i, o in enumerate(offsets) if o >= start and o not in rejected]


def record_offsets(records: Sequence[JournalRecord]) -> Sequence[int]:
    """Where each record starts (without making the records of a `RecordIndex`)."""
    if isinstance(records, RecordIndex):
        return records.offsets()
    return [r.offset for r in records]


class Payloads(Sequence[bytes]):
    """The payloads of the records at `positions`, copied out a slice at a time: the drain
    encodes a batch chunk by chunk, so its payloads are never all copied at once."""

    __slots__ = ("_positions", "_records")

    def __init__(self, records: Sequence[JournalRecord], positions: Sequence[int]) -> None:
        self._records = records
        self._positions = positions

    def __len__(self) -> int:
        return len(self._positions)

    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...
    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if not isinstance(index, slice):
            return self._records[self._positions[index]].payload
        part = self._positions[index]
        if isinstance(self._records, RecordIndex):
            return self._records.payloads(part)
        return [self._records[i].payload for i in part]


def validate(batch: Sequence[JournalRecord]) -> tuple[list[AuditEvent], list[CorruptRegion]]:
    events: list[AuditEvent] = []
    bad: list[CorruptRegion] = []
    for record in batch:
        try:
            events.append(AuditEvent.from_json_bytes(record.payload))
        except InvalidAuditEvent as exc:
            bad.append(CorruptRegion(record.offset, record.end - record.offset, str(exc)))
    return events, bad
