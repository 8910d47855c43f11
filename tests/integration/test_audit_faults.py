"""Under each fault, every acknowledged audit event ends up in audit_log exactly once.

32 writers record 2,048 events (paced over ~3 s, so a fault outlives a breaker reset);
the fault starts when a quarter is done and is healed at three quarters, while the queue
worker runs. After healing, the worker drains the stream
and the recovery job replays the journal; the truth is read over the direct URL.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from reference.audit.db import make_engine, run_bounded
from reference.audit.event import AuditEvent
from reference.audit.store import AuditStore
from reference.service.configs import database_config
from scenarios.faults import FaultInjector, FaultSpec
from scenarios.stack import Stack
from tests.integration.audit_support import audit_rig, burst, rig_settings, running

pytestmark = pytest.mark.integration


class CountingStore(AuditStore):
    """Counts failed batch inserts (to prove a fault really hit the worker)."""

    batch_failures = 0

    async def insert_many(
        self, events: Sequence[AuditEvent], path: str, *, timeout_s: float | None = None
    ) -> int:
        try:
            return await super().insert_many(events, path, timeout_s=timeout_s)
        except Exception:
            type(self).batch_failures += 1
            raise


@dataclass(frozen=True)
class Case:
    faults: tuple[FaultSpec, ...]
    fallback: str | None
    """A path some events must have taken (None: all via the queue, worker hit instead)."""


CASES = {
    "redis-down": Case((FaultSpec("down", "redis"),), "db"),
    "redis-blackhole": Case((FaultSpec("blackhole", "redis"),), "db"),
    "redis-sigkill-restart": Case((FaultSpec("sigkill", "redis"),), "db"),
    # replies slower than the timeout: XADDs time out *after* being applied (unknown
    # outcome), so events reach the table twice, via the database and the worker
    "redis-slow-replies": Case((FaultSpec("latency", "redis", {"latency": 700}),), "db"),
    "postgres-down": Case((FaultSpec("down", "postgres"),), None),
    "postgres-blackhole": Case((FaultSpec("blackhole", "postgres"),), None),
    "both-down": Case((FaultSpec("down", "redis"), FaultSpec("down", "postgres")), "file"),
    "redis-down-postgres-blackhole": Case(
        (FaultSpec("down", "redis"), FaultSpec("blackhole", "postgres")), "file"
    ),
    "worker-db-reset-mid-batch": Case((FaultSpec("reset_peer", "postgres"),), None),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_every_acknowledged_event_lands_once(
    stormproof_stack: Stack, tmp_path: Path, name: str
) -> None:
    """Burst through the fault, heal, drain, recover: no acknowledged event lost or doubled."""
    case = CASES[name]
    injector = FaultInjector.on_stack(stormproof_stack)
    CountingStore.batch_failures = 0

    def apply() -> None:
        for spec in case.faults:
            injector.apply(spec)

    def heal() -> None:
        assert injector.revert_all() == []

    async with audit_rig(stormproof_stack, tmp_path, store_class=CountingStore) as rig:
        started = time.monotonic()
        try:
            async with running(rig.worker):
                outcome = await burst(rig.audit, pace_s=0.04, at_fraction={0.25: apply, 0.75: heal})
        finally:
            injector.revert_all()
        elapsed = time.monotonic() - started
        await rig.heal_and_recover()
        rows = await rig.check_exactly_once(outcome)

        paths = outcome.paths()
        assert len(outcome.acked) + len(outcome.refused) == 32 * 64
        assert len(outcome.acked) >= 32 * 64 * 0.9, (paths, len(outcome.refused))
        assert len(rows) >= len(outcome.acked)
        if case.fallback is not None:
            assert paths.get(case.fallback, 0) > 0, paths
        else:
            assert paths == {"queue": len(outcome.acked)}, paths
            assert CountingStore.batch_failures > 0, "the fault never reached the worker"
        # 64 paced events take 2.6 s; a timeout per event during the fault (half of them,
        # 0.4 s each) would take ~15 s: the breakers keep it to a few timeouts per writer
        assert elapsed < 8, f"the burst took {elapsed:.1f}s: an outage cost a timeout per event"


async def test_run_bounded_invalidates_a_cancelled_connection(
    stormproof_stack: Stack, tmp_path: Path
) -> None:
    """A timed-out query's connection is discarded: the next operation gets a new backend."""
    settings = rig_settings(stormproof_stack, tmp_path)
    engine = make_engine(database_config(settings), pool_size=1, max_overflow=0)

    async def pid(conn: AsyncConnection) -> int:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())

    async def slow(conn: AsyncConnection) -> None:
        await conn.execute(text("SELECT pg_sleep(5)"))

    try:
        first = await run_bounded(engine, pid, 5)
        assert await run_bounded(engine, pid, 5) == first  # healthy connections are reused
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await run_bounded(engine, slow, 0.3)
        assert time.monotonic() - started < 1.5
        second = await run_bounded(engine, pid, 5)  # would wait or fail on a half-used one
        assert second != first
        assert time.monotonic() - started < 3.0
    finally:
        await engine.dispose()


async def test_db_path_bounded_under_postgres_black_hole(
    stormproof_stack: Stack, tmp_path: Path
) -> None:
    """With Redis down and PostgreSQL a black hole, records fall to the journal in bounded time,
    and once the database breaker is open they stop paying the database timeout."""
    async with audit_rig(stormproof_stack, tmp_path) as rig:
        injector = FaultInjector.on_stack(stormproof_stack)
        injector.apply(FaultSpec("down", "redis"))
        injector.apply(FaultSpec("blackhole", "postgres"))
        try:
            durations: list[float] = []
            paths: list[str] = []
            for i in range(12):
                started = time.monotonic()
                paths.append(await rig.audit.record(AuditEvent.new("a", "b", "c", str(i))))
                durations.append(time.monotonic() - started)
        finally:
            assert injector.revert_all() == []
        assert set(paths) == {"file"}
        timeout = rig.settings.audit_timeout_s
        assert max(durations) < 2 * timeout + 0.5, durations
        assert sum(d > timeout for d in durations[-4:]) == 0, durations  # breaker open
        assert rig.audit.db_breaker.state.value == "OPEN"
        result = await rig.recovery.run_once()
        assert result.replayed == 12 and result.remaining == 0
        assert len(await rig.rows_per_event()) == 12
