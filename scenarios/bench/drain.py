"""The recovery drain's figures for `stormproof bench audit`.

- `drain_vs_copy`: rows/s of a recovery run over journal segments against a bare COPY of
  the same rows into a table of the same shape (best of alternating rounds, same run);
- `drain_1m_s`: seconds to replay one million journaled events (the plan's `drain_1m`
  events, scaled to a million when the quick plan measures fewer);
- `drain_peak_mb`: the Python heap's peak (tracemalloc) while draining a backlog of many
  segments: bounded by about two segments, not by the backlog.

Journals are written straight in the journal's format (header + framed records), once,
and copied for each round: writing them through `Journal.append` would take longer than
the drains being measured.
"""

from __future__ import annotations

import json
import shutil
import time
import tracemalloc
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from reference.audit.event import canonical_json
from reference.audit.journal_format import ZERO_MAC, encode_header, encode_record, segment_name
from reference.audit.recovery import RecoveryConfig, RecoveryJob
from reference.audit.store import AuditStore

__all__ = ["DrainFigures", "DrainPlan", "canonical_docs", "measure_drain", "write_segments"]

SEGMENT_BYTES = 4 * 1024 * 1024
_BARE_COLUMNS = "event_id, occurred_at, actor, action, entity, entity_id, payload, path"
ROUNDS = 3


@dataclass(frozen=True)
class DrainPlan:
    """How many rows each drain figure replays."""

    rows: int = 200_000
    drain_1m: int = 1_000_000
    peak_rows: int = 200_000

    @classmethod
    def quick(cls) -> DrainPlan:
        """A short plan for CI (`--quick`, the test suite)."""
        return cls(rows=10_000, drain_1m=20_000, peak_rows=20_000)


@dataclass(frozen=True)
class DrainFigures:
    """Drain and bare COPY rows/s (best rounds), a million events' drain time, peak heap."""

    ours: float
    baseline: float
    drain_1m_s: float
    drain_1m_events: int
    peak_mb: float
    peak_backlog_mb: float
    segment_mb: float


async def measure_drain(
    engine: AsyncEngine, database_url: str, workdir: Path, plan: DrainPlan
) -> DrainFigures:
    """All three drain figures, one measurement at a time."""
    template = workdir / "drain-template"
    docs = list(canonical_docs(plan.rows))
    write_segments(template, docs, SEGMENT_BYTES)
    ours = base = 0.0
    for round_ in range(ROUNDS):
        replayed, seconds = await _drain_copy(engine, template, workdir / f"drain-{round_}")
        ours = max(ours, replayed / seconds)
        # typed rows exist only for the bare side's turn: hundreds of thousands of live
        # objects would make the garbage collector's passes during our drain far longer
        rows = [_typed_row(doc) for doc in docs]
        base = max(base, len(rows) / await _bare_copy(engine, database_url, rows))
        del rows
    del docs
    shutil.rmtree(template)
    big = workdir / "drain-1m"
    write_segments(big, canonical_docs(plan.drain_1m), SEGMENT_BYTES)
    replayed, seconds = await _drain_copy(engine, big, workdir / "drain-1m-run")
    shutil.rmtree(big)
    peak_dir = workdir / "drain-peak"
    write_segments(peak_dir, canonical_docs(plan.peak_rows), SEGMENT_BYTES)
    backlog = sum(p.stat().st_size for p in peak_dir.iterdir())
    tracemalloc.start()
    try:
        await _drain_copy(engine, peak_dir, workdir / "drain-peak-run")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    shutil.rmtree(peak_dir)
    return DrainFigures(
        ours=ours,
        baseline=base,
        drain_1m_s=seconds * 1_000_000 / replayed,
        drain_1m_events=replayed,
        peak_mb=peak / 2**20,
        peak_backlog_mb=backlog / 2**20,
        segment_mb=SEGMENT_BYTES / 2**20,
    )


async def _drain_copy(engine: AsyncEngine, template: Path, directory: Path) -> tuple[int, float]:
    """Records replayed and seconds taken by one recovery run over a copy of `template`."""
    shutil.copytree(template, directory)
    name = f"bench_drain_{uuid.uuid4().hex[:8]}"
    store = AuditStore(engine, table=name, dead_letter_table=f"{name}_dl")
    await store.ensure_schema()
    try:
        started = time.perf_counter()
        result = await RecoveryJob(RecoveryConfig(directory), store).run_once()
        seconds = time.perf_counter() - started
    finally:
        await _drop(engine, name)
        shutil.rmtree(directory, ignore_errors=True)
    if result.remaining or result.quarantined:
        raise RuntimeError(f"the drain left work behind: {result}")
    return result.replayed, seconds


async def _bare_copy(
    engine: AsyncEngine, database_url: str, rows: Sequence[tuple[object, ...]]
) -> float:
    """Seconds to COPY `rows` (typed values) into a fresh table and commit."""
    name = f"bench_copy_{uuid.uuid4().hex[:8]}"
    await AuditStore(engine, table=name, dead_letter_table=f"{name}_dl").ensure_schema()
    try:
        started = time.perf_counter()
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            sql = f"COPY {name} ({_BARE_COLUMNS}) FROM STDIN"
            async with conn.cursor() as cur, cur.copy(sql) as copy:
                for row in rows:
                    await copy.write_row(row)
            await conn.commit()
        return time.perf_counter() - started
    finally:
        await _drop(engine, name)


async def _drop(engine: AsyncEngine, name: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(f"DROP TABLE IF EXISTS {name}, {name}_dl"))


def canonical_docs(count: int) -> Iterator[bytes]:
    """`count` distinct events' canonical JSON, as `AuditEvent.to_json_bytes` spells it."""
    occurred = datetime.now(UTC).isoformat()
    for i in range(count):
        yield canonical_json(
            {
                "action": "update",
                "actor": "bench",
                "entity": "beneficio",
                "entity_id": str(i),
                "event_id": str(uuid.uuid4()),
                "occurred_at": occurred,
                "payload": {"amount": 123.45, "i": i, "status": "approved"},
            }
        )


def write_segments(directory: Path, docs: Iterable[bytes], segment_bytes: int) -> None:
    """Sealed journal segments (no HMAC) holding `docs`, in the journal's own format."""
    directory.mkdir(mode=0o700, parents=True)
    sequence = 0
    out = None
    size = segment_bytes
    try:
        for doc in docs:
            frame = encode_record(doc)
            if out is None or size + len(frame) > segment_bytes:
                if out is not None:
                    out.close()
                sequence += 1
                out = (directory / segment_name(sequence)).open("wb")
                header = encode_header(sequence, ZERO_MAC, None)
                out.write(header)
                size = len(header)
            out.write(frame)
            size += len(frame)
    finally:
        if out is not None:
            out.close()


def _typed_row(doc: bytes) -> tuple[object, ...]:
    """The bare baseline's row: the same values, typed (`_BARE_COLUMNS` order)."""
    d = json.loads(doc)
    return (
        uuid.UUID(d["event_id"]),
        datetime.fromisoformat(d["occurred_at"]),
        d["actor"],
        d["action"],
        d["entity"],
        d["entity_id"],
        json.dumps(d["payload"]),
        "file",
    )
