"""The recovery drain holds about two segments in memory, whatever the backlog (issue 12.4).

50 segments of 1 MB are replayed into a real PostgreSQL under tracemalloc; the peak is
compared with the peak of replaying one such segment, measured in the same test. A
variant that keeps every segment it read until the run ends (the old behaviour) is
flagged by the same bound.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from reference.audit.event import AuditEvent
from reference.audit.journal_format import HEADER_BYTES, SegmentScan, encode_record
from reference.audit.recovery import RecoveryConfig, RecoveryJob, RecoveryResult
from scenarios.bench.drain import write_segments
from scenarios.stack import Stack
from tests.integration.audit_support import fresh_store, rows_per_event

SEGMENT_BYTES = 1024 * 1024
SEGMENTS = 50
BOUND = 2.5
"""Peak over the 50-segment backlog, in units of one segment's replay peak: the segment
being replayed plus the one read ahead, with room for allocator noise."""


class Hoarding(RecoveryJob):
    """Broken variant: keeps every segment it read until the run ends."""

    kept: list[SegmentScan]

    async def _replay_segment(
        self, path: Path, totals: Any, read: Awaitable[SegmentScan] | None = None
    ) -> bool:
        scan = await read if read is not None else None
        if scan is not None:
            self.kept.append(scan)
            done: asyncio.Future[SegmentScan] = asyncio.get_running_loop().create_future()
            done.set_result(scan)
            read = done
        return await super()._replay_segment(path, totals, read)


def _backlog(directory: Path, segments: int) -> int:
    """`segments` full 1 MB segments of valid ~4 KB events; returns how many events."""

    def doc(i: int) -> bytes:
        number = f"{i:06d}"  # fixed width: every record has the same size
        return AuditEvent.new(
            "a", "update", "e", number, {"n": number, "blob": "x" * 4000}
        ).to_json_bytes()

    per_segment = (SEGMENT_BYTES - HEADER_BYTES) // len(encode_record(doc(0)))
    docs = [doc(i) for i in range(segments * per_segment)]
    write_segments(directory, docs, SEGMENT_BYTES)
    assert len(list(directory.iterdir())) == segments
    return len(docs)


async def _peak(job: RecoveryJob) -> tuple[int, RecoveryResult]:
    tracemalloc.start()
    try:
        result = await job.run_once()
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


async def test_drain_peak_is_about_two_segments(stormproof_stack: Stack, tmp_path: Path) -> None:
    """Reference: the 50-segment drain peaks under 2.5x a one-segment drain (and under
    10 MB against a 50 MB backlog), every event lands; the hoarding variant exceeds it."""
    one = _backlog(tmp_path / "one", 1)
    many = _backlog(tmp_path / "many", SEGMENTS)
    hoard = _backlog(tmp_path / "hoard", SEGMENTS)
    async with fresh_store(stormproof_stack, op_timeout_s=30) as store:
        unit, result = await _peak(RecoveryJob(RecoveryConfig(tmp_path / "one"), store))
        assert (result.replayed, result.remaining) == (one, 0)
    async with fresh_store(stormproof_stack, op_timeout_s=30) as store:
        peak, result = await _peak(RecoveryJob(RecoveryConfig(tmp_path / "many"), store))
        assert (result.replayed, result.remaining) == (many, 0)
        assert len(await rows_per_event(stormproof_stack, store.table)) == many
    assert peak <= BOUND * unit, (peak / 2**20, unit / 2**20)
    assert peak < 10 * SEGMENT_BYTES, peak / 2**20

    async with fresh_store(stormproof_stack, op_timeout_s=30) as store:
        hoarding = Hoarding(RecoveryConfig(tmp_path / "hoard"), store)
        hoarding.kept = []
        hoarded, result = await _peak(hoarding)
        assert result.replayed == hoard
    assert len(hoarding.kept) == SEGMENTS
    assert hoarded > BOUND * unit, (hoarded / 2**20, unit / 2**20)
