"""`stormproof bench audit`: each audit path's throughput against a raw baseline.

Brings up its own local stack and measures, with 64 concurrent writers (direct URLs, so
Toxiproxy's own cost is left out of both sides):

- queue:   `ResilientAudit` with only the queue       vs bare XADD (redis.asyncio)
- queue with WAIT 1 (a replicated stack of its own: `scenarios.bench.queue_wait`) vs bare
           XADD on the same primary: `queue_wait_vs_xadd`, reported, no target
- db:      `ResilientAudit` with only the database    vs a bare single-row autocommit INSERT
- journal: `ResilientAudit` with only the journal     vs write + fsync per record
- drain:   a recovery run over journal segments (rows/s) vs a bare COPY of the same rows
           (`scenarios.bench.drain`, which also gives `drain_1m_s` and `drain_peak_mb`)

Each comparison alternates rounds of both sides and keeps the best of each (the CPU is
shared). Figures are reported, not asserted; the targets are printed next to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from reference.audit.db import make_engine
from reference.audit.event import AuditEvent
from reference.audit.journal import Journal, JournalConfig
from reference.audit.journal_format import encode_record
from reference.audit.queue import AuditQueue
from reference.audit.resilient import ResilientAudit
from reference.audit.store import AuditStore
from reference.clock import SYSTEM_CLOCK
from reference.config import Settings
from reference.service.configs import audit_config, breakers, database_config
from scenarios.bench.drain import SEGMENT_BYTES, DrainPlan, measure_drain
from scenarios.bench.queue_wait import compare_queue_with_xadd, measure_queue_wait
from scenarios.stack import Stack, open_stack

__all__ = ["BenchPlan", "main", "measure"]

WRITERS = 64
DRAIN_ROUNDS = 2
TARGETS = {
    "queue_vs_xadd": 0.5,
    "db_vs_insert": 0.85,
    "journal_vs_fsync": 6.0,
    "drain_vs_copy": 0.7,
}
ROUNDS = 3
"""Rounds of each side, alternating, best of each: the CPU is shared, and a single
figure is at the mercy of whatever else ran at that moment."""
_COLUMNS = "event_id, occurred_at, actor, action, entity, entity_id, payload, path"


@dataclass(frozen=True)
class BenchPlan:
    """How long each measurement runs and how much it may use."""

    duration_s: float = 3.0
    pool_events: int = 80_000
    drain: DrainPlan = field(default_factory=DrainPlan)

    @classmethod
    def quick(cls) -> BenchPlan:
        """A short plan for CI (`--quick`, the test suite)."""
        return cls(duration_s=0.4, pool_events=4_000, drain=DrainPlan.quick())


@dataclass(frozen=True)
class Pair:
    """Our figure and the raw baseline's, in operations per second."""

    ours: float
    baseline: float

    @property
    def ratio(self) -> float:
        """Ours over the baseline (0 when the baseline measured nothing)."""
        return self.ours / self.baseline if self.baseline > 0 else 0.0


def main(json_output: bool = False, quick: bool = False) -> int:
    """Run the whole bench on a fresh local stack; print a table or one JSON object."""
    plan = BenchPlan.quick() if quick else BenchPlan()
    with open_stack("local") as stack, tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        results = asyncio.run(measure(stack, Path(tmp), plan))
    if json_output:
        print(json.dumps(_as_json(results, plan), sort_keys=True))
    else:
        _print_table(results, plan)
    return 0


async def measure(stack: Stack, workdir: Path, plan: BenchPlan) -> dict[str, Pair]:
    """All four comparisons, one after the other (never overlapping); the drain's extra
    figures come as `drain_1m_s` and `drain_peak_mb` pairs (ours only)."""
    settings = Settings(
        redis_url=stack.urls.redis_direct_url,
        database_url=stack.urls.database_direct_url,
        audit_timeout_s=5.0,
        redis_op_timeout_s=5.0,
        db_op_timeout_s=10.0,
        breaker_failure_threshold=1000,
    )
    events = [_event(i) for i in range(plan.pool_events)]
    results = {
        "queue_vs_xadd": await _queue(settings, events, plan),
        "db_vs_insert": await _db(settings, events, plan),
        "journal_vs_fsync": await _journal(settings, workdir, events, plan),
    }
    del events
    engine = make_engine(database_config(settings))
    try:
        drain = await measure_drain(engine, settings.database_url, workdir, plan.drain)
    finally:
        await engine.dispose()
    results["drain_vs_copy"] = Pair(drain.ours, drain.baseline)
    results["drain_1m_s"] = Pair(drain.drain_1m_s, float(drain.drain_1m_events))
    results["drain_peak_mb"] = Pair(drain.peak_mb, drain.peak_backlog_mb)
    wait_events = [_event(i) for i in range(plan.pool_events)]
    results["queue_wait_vs_xadd"] = Pair(
        *await measure_queue_wait(
            wait_events,
            WRITERS,
            lambda s, queue: _audit(s, queue=queue),
            lambda n, ours, base: _compare(plan, n, ours, base),
        )
    )
    return results


def _audit(settings: Settings, **parts: Any) -> ResilientAudit:
    """A ResilientAudit configured from `settings` as the service builds it."""
    redis_breaker, db_breaker = breakers(settings)
    return ResilientAudit(
        audit_config(settings), redis_breaker=redis_breaker, db_breaker=db_breaker, **parts
    )


# -- the four comparisons ------------------------------------------------------------------


async def _queue(settings: Settings, events: Sequence[AuditEvent], plan: BenchPlan) -> Pair:
    ours, base = await compare_queue_with_xadd(
        settings.redis_url,
        settings.redis_op_timeout_s,
        events,
        WRITERS,
        lambda client, stream: _audit(settings, queue=AuditQueue(client, stream)),
        lambda n, ours, base: _compare(plan, n, ours, base),
        stream=f"bench:audit:{uuid.uuid4().hex[:8]}",
    )
    return Pair(ours, base)


async def _db(settings: Settings, events: Sequence[AuditEvent], plan: BenchPlan) -> Pair:
    engine = make_engine(database_config(settings))
    bare_engine = make_engine(database_config(settings), pre_ping=False).execution_options(
        isolation_level="AUTOCOMMIT"
    )
    async with _tables(engine, 2) as (ours_table, bare_table):
        store = AuditStore(engine, table=ours_table, dead_letter_table=f"{ours_table}_dl")
        audit = _audit(settings, store=store)
        insert = text(
            f"INSERT INTO {bare_table} ({_COLUMNS}) VALUES (:event_id, :occurred_at, :actor, "
            ":action, :entity, :entity_id, CAST(:payload AS jsonb), 'db') "
            "ON CONFLICT (event_id) DO NOTHING"
        )
        rows = [_row(e) for e in events]

        async def bare_insert(i: int) -> None:
            async with bare_engine.connect() as conn:
                await conn.execute(insert, rows[i])

        try:
            ours, base = await _compare(
                plan, len(events), lambda i: audit.record(events[i]), bare_insert
            )
        finally:
            await bare_engine.dispose()
    await engine.dispose()
    return Pair(ours, base)


async def _journal(
    settings: Settings, workdir: Path, events: Sequence[AuditEvent], plan: BenchPlan
) -> Pair:
    journal = Journal(JournalConfig(workdir / "journal-path"), SYSTEM_CLOCK)
    await journal.open()
    audit = _audit(settings, journal=journal)
    try:
        ours = await _rate(
            plan.duration_s, iter(range(len(events))), lambda i: audit.record(events[i])
        )
    finally:
        await journal.close()
    frames = [encode_record(e.to_json_bytes()) for e in events]
    base = await asyncio.to_thread(_fsync_per_record, workdir / "fsync-per-record", frames, plan)
    return Pair(ours, base)


# -- plumbing --------------------------------------------------------------------------------


async def _compare(
    plan: BenchPlan,
    available: int,
    ours_op: Callable[[int], Awaitable[object]],
    base_op: Callable[[int], Awaitable[object]],
) -> tuple[float, float]:
    """Best of ROUNDS alternating rounds of each side (each event used once per side)."""
    ours_next, base_next = iter(range(available)), iter(range(available))
    ours = base = 0.0
    for _ in range(ROUNDS):
        ours = max(ours, await _rate(plan.duration_s / ROUNDS, ours_next, ours_op))
        base = max(base, await _rate(plan.duration_s / ROUNDS, base_next, base_op))
    return ours, base


async def _rate(
    duration_s: float, counter: Iterator[int], op: Callable[[int], Awaitable[object]]
) -> float:
    """Operations per second by WRITERS concurrent loops over `op(i)`, for the duration."""
    done = 0
    deadline = time.perf_counter() + duration_s

    async def writer() -> None:
        nonlocal done
        for i in counter:
            await op(i)
            done += 1
            if time.perf_counter() >= deadline:
                return

    started = time.perf_counter()
    async with asyncio.timeout(duration_s + 30):
        await asyncio.gather(*(writer() for _ in range(WRITERS)))
    return done / (time.perf_counter() - started)


def _fsync_per_record(path: Path, frames: Sequence[bytes], plan: BenchPlan) -> float:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        done = 0
        started = time.perf_counter()
        deadline = started + plan.duration_s
        for frame in frames:
            os.write(fd, frame)
            os.fsync(fd)
            done += 1
            if time.perf_counter() >= deadline:
                break
        return done / (time.perf_counter() - started)
    finally:
        os.close(fd)


@contextlib.asynccontextmanager
async def _tables(engine: AsyncEngine, count: int) -> AsyncIterator[tuple[str, ...]]:
    names = tuple(f"bench_audit_{uuid.uuid4().hex[:8]}" for _ in range(count))
    for name in names:
        await AuditStore(engine, table=name, dead_letter_table=f"{name}_dl").ensure_schema()
    try:
        yield names
    finally:
        async with engine.begin() as conn:
            for name in names:
                await conn.execute(text(f"DROP TABLE IF EXISTS {name}, {name}_dl"))


def _event(i: int) -> AuditEvent:
    return AuditEvent.new(
        "bench", "update", "beneficio", str(i), {"i": i, "status": "approved", "amount": 123.45}
    )


def _row(event: AuditEvent) -> dict[str, object]:
    return {
        "event_id": event.event_id,
        "occurred_at": event.occurred_at,
        "actor": event.actor,
        "action": event.action,
        "entity": event.entity,
        "entity_id": event.entity_id,
        "payload": json.dumps(event.payload),
    }


def _as_json(results: dict[str, Pair], plan: BenchPlan) -> dict[str, object]:
    names = {
        "queue_vs_xadd": ("queue_events_per_s", "xadd_per_s"),
        "db_vs_insert": ("db_events_per_s", "insert_per_s"),
        "journal_vs_fsync": ("journal_events_per_s", "fsync_records_per_s"),
        "drain_vs_copy": ("drain_rows_per_s", "copy_rows_per_s"),
        "queue_wait_vs_xadd": ("queue_wait_events_per_s", "replicated_xadd_per_s"),
    }
    out: dict[str, object] = {}
    for key, (ours_key, base_key) in names.items():
        pair = results[key]
        out[key] = round(pair.ratio, 3)
        out[ours_key] = round(pair.ours, 1)
        out[base_key] = round(pair.baseline, 1)
    out["drain_1m_s"] = round(results["drain_1m_s"].ours, 2)
    out["drain_1m_events_measured"] = int(results["drain_1m_s"].baseline)
    out["drain_peak_mb"] = round(results["drain_peak_mb"].ours, 1)
    out["drain_peak_backlog_mb"] = round(results["drain_peak_mb"].baseline, 1)
    out["drain_segment_mb"] = SEGMENT_BYTES / 2**20
    out["targets"] = {k: v for k, v in TARGETS.items() if v is not None}
    out["writers"] = WRITERS
    out["duration_s"] = plan.duration_s
    out["rounds"] = ROUNDS
    return out


def _print_table(results: dict[str, Pair], plan: BenchPlan) -> None:
    from rich.console import Console
    from rich.table import Table

    labels = {
        "queue_vs_xadd": ("queue path (events/s)", "bare XADD"),
        "db_vs_insert": ("db path (events/s)", "bare autocommit INSERT"),
        "journal_vs_fsync": ("journal path (events/s)", "write+fsync per record"),
        "drain_vs_copy": ("recovery drain (rows/s)", "bare COPY"),
        "queue_wait_vs_xadd": ("queue path + WAIT 1 (events/s)", "bare XADD, replicated"),
    }
    title = (
        f"audit bench: {WRITERS} writers, {plan.duration_s:g} s per figure "
        f"(best of {ROUNDS} alternating rounds)"
    )
    table = Table(title=title)
    for column in ("measure", "ours", "baseline", "", "ratio", "target"):
        table.add_column(column, justify="left" if column in ("measure", "") else "right")
    for key, (ours_label, base_label) in labels.items():
        pair = results[key]
        target = TARGETS.get(key)
        verdict = "" if target is None else ("ok" if pair.ratio >= target else "BELOW")
        table.add_row(
            ours_label,
            f"{pair.ours:,.0f}",
            f"{pair.baseline:,.0f}",
            base_label,
            f"{pair.ratio:.2f}x",
            "-" if target is None else f">= {target:g}x {verdict}",
        )
    one_m, peak = results["drain_1m_s"], results["drain_peak_mb"]
    table.add_row(
        "drain of 1M journaled events (s)",
        f"{one_m.ours:.2f}",
        f"{one_m.baseline:,.0f}",
        "events measured",
        "",
        "-",
    )
    table.add_row(
        "drain peak heap (MB)",
        f"{peak.ours:.1f}",
        f"{peak.baseline:.1f}",
        f"MB backlog, {SEGMENT_BYTES / 2**20:g} MB segments",
        "",
        "-",
    )
    Console().print(table)
