"""Shared rig for the audit integration tests: the audit wired to the real stack.

Everything the target uses goes through Toxiproxy; the truth (`rows_per_event`) is read
over the direct database URL. Each rig has its own tables and stream, so tests are
independent of each other and of other suites sharing the stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis.asyncio as aioredis

from reference.audit.db import make_engine
from reference.audit.event import AuditEvent
from reference.audit.journal import Journal, JournalConfig
from reference.audit.queue import AuditQueue, QueueWorker
from reference.audit.recovery import RecoveryConfig, RecoveryJob
from reference.audit.resilient import AuditUnavailable, ResilientAudit
from reference.audit.store import AuditStore
from reference.clock import SYSTEM_CLOCK
from reference.config import Settings
from reference.metrics import AuditPath, ResilienceMetrics
from reference.redis_client import make_redis
from reference.service.configs import audit_config, breakers, database_config
from reference.service.configs import worker_config as build_worker_config
from scenarios.stack import Stack

WORKER_BLOCK_S = 0.2


def rig_settings(stack: Stack, journal_dir: Path, **overrides: Any) -> Settings:
    """Small timeouts so each fault test stays fast."""
    values: dict[str, Any] = {
        "redis_url": stack.urls.redis_url,
        "database_url": stack.urls.database_url,
        "redis_op_timeout_s": 0.3,
        "audit_timeout_s": 0.4,
        "db_op_timeout_s": 1.0,
        "db_connect_timeout_s": 1.0,
        "breaker_failure_threshold": 5,
        "breaker_reset_timeout_s": 1.0,
        "breaker_half_open_max_calls": 3,
        "audit_queue_stream": f"audit:test:{uuid.uuid4().hex[:12]}",
        "audit_backup_path": journal_dir,
        "audit_max_deliveries": 5,
    }
    values.update(overrides)
    return Settings(**values)


def make_event(i: int = 0, **payload: Any) -> AuditEvent:
    return AuditEvent.new("tester", "update", "beneficio", str(i), {"i": i, **payload})


@dataclass
class Outcome:
    """What the writers saw: acknowledged events (with their path) and refused ones."""

    acked: dict[uuid.UUID, AuditPath] = field(default_factory=dict)
    refused: set[uuid.UUID] = field(default_factory=set)

    def paths(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for path in self.acked.values():
            counts[path] = counts.get(path, 0) + 1
        return counts


@dataclass
class Rig:
    """The audit on the real stack, with its worker, recovery job and truth."""

    stack: Stack
    settings: Settings
    store: AuditStore
    redis: aioredis.Redis
    worker_redis: aioredis.Redis
    journal: Journal
    audit: ResilientAudit
    worker: QueueWorker
    recovery: RecoveryJob
    metrics: ResilienceMetrics
    _closers: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)

    async def rows_per_event(self) -> dict[uuid.UUID, int]:
        """The truth: how many rows each event_id has, read over the direct URL."""
        return await rows_per_event(self.stack, self.store.table)

    async def heal_and_recover(self, timeout_s: float = 15.0) -> None:
        """After the fault: drain the queue, then replay the journal."""
        await self.worker.drain(timeout_s)
        result = await self.recovery.run_once()
        assert result.remaining == 0, result

    async def check_exactly_once(self, outcome: Outcome) -> dict[uuid.UUID, int]:
        """Every acknowledged event is there exactly once; nothing else, no duplicates."""
        rows = await self.rows_per_event()
        lost = [e for e in outcome.acked if e not in rows]
        duplicated = {e: n for e, n in rows.items() if n != 1}
        unexpected = set(rows) - set(outcome.acked) - outcome.refused
        assert not lost, f"{len(lost)} acknowledged events lost, e.g. {lost[:3]}"
        assert not duplicated, f"duplicated rows: {list(duplicated.items())[:3]}"
        assert not unexpected, f"{len(unexpected)} rows nobody wrote"
        return rows


async def burst(
    audit: ResilientAudit,
    *,
    writers: int = 32,
    per_writer: int = 64,
    pace_s: float = 0.0,
    at_fraction: dict[float, Callable[[], Any]] | None = None,
) -> Outcome:
    """`writers` concurrent writers record `per_writer` events each, `pace_s` apart.

    `at_fraction` maps a fraction of events completed to a blocking action (a fault, a
    heal), run in order in a thread once that fraction is reached; writers do not wait.
    """
    outcome = Outcome()
    total = writers * per_writer
    done = 0
    progress = asyncio.Condition()

    async def writer(w: int) -> None:
        nonlocal done
        for k in range(per_writer):
            event = make_event(w * per_writer + k, writer=w)
            try:
                path = await audit.record(event)
            except AuditUnavailable:
                outcome.refused.add(event.event_id)
            else:
                outcome.acked[event.event_id] = path
            async with progress:
                done += 1
                progress.notify_all()
            if pace_s:
                await asyncio.sleep(pace_s)

    async def controller() -> None:
        for fraction, action in sorted((at_fraction or {}).items()):
            threshold = fraction * total
            async with progress:
                while done < threshold:
                    await progress.wait()
            await asyncio.to_thread(action)

    async with asyncio.timeout(60):
        await asyncio.gather(controller(), *(writer(w) for w in range(writers)))
    return outcome


@contextlib.asynccontextmanager
async def audit_rig(
    stack: Stack,
    tmp_path: Path,
    *,
    journal_bytes: int = 16 * 1024 * 1024,
    worker_config: dict[str, Any] | None = None,
    store_class: type[AuditStore] = AuditStore,
    **overrides: Any,
) -> AsyncIterator[Rig]:
    """The whole audit on `stack`, with fresh tables, stream and journal; torn down after."""
    journal_dir = tmp_path / f"journal-{uuid.uuid4().hex[:6]}"
    settings = rig_settings(stack, journal_dir, **overrides)
    suffix = uuid.uuid4().hex[:10]
    engine = make_engine(database_config(settings))
    store = store_class(
        engine,
        table=f"audit_log_{suffix}",
        dead_letter_table=f"audit_dl_{suffix}",
        op_timeout_s=settings.db_op_timeout_s,
    )
    await store.ensure_schema(timeout_s=10)
    metrics = ResilienceMetrics()
    redis = make_redis(settings.redis_url, settings.redis_op_timeout_s)
    worker_redis = make_redis(settings.redis_url, WORKER_BLOCK_S + 1.0, max_connections=4)
    journal = Journal(JournalConfig(journal_dir, segment_max_bytes=journal_bytes), SYSTEM_CLOCK)
    await journal.open()
    redis_breaker, db_breaker = breakers(settings)
    metrics.watch_breaker(redis_breaker)
    audit = ResilientAudit(
        audit_config(settings),
        queue=AuditQueue(redis, settings.audit_queue_stream),
        redis_breaker=redis_breaker,
        db_breaker=db_breaker,
        store=store,
        journal=journal,
        metrics=metrics,
    )
    config = {
        "consumer": f"worker-{suffix}",
        "block_s": WORKER_BLOCK_S,
        "claim_idle_s": 2.0,
        "redis_timeout_s": 1.0,
        "backoff_max_s": 0.3,
        **(worker_config or {}),
    }
    worker = QueueWorker(worker_redis, store, build_worker_config(settings, **config))
    recovery = RecoveryJob(
        RecoveryConfig(journal_dir, batch_timeout_s=10.0), store, journal=journal, worker=worker
    )
    rig = Rig(
        stack, settings, store, redis, worker_redis, journal, audit, worker, recovery, metrics
    )
    try:
        yield rig
    finally:
        await journal.close()
        for client in (redis, worker_redis):
            with contextlib.suppress(Exception):
                await client.delete(settings.audit_queue_stream)
            await client.aclose()
        with contextlib.suppress(Exception):
            async with await psycopg.AsyncConnection.connect(
                stack.urls.database_direct_url, autocommit=True, connect_timeout=5
            ) as conn:
                await conn.execute(f"DROP TABLE IF EXISTS {store.table}, {store.dead_letter_table}")
        await engine.dispose()


@contextlib.asynccontextmanager
async def running(worker: QueueWorker) -> AsyncIterator[asyncio.Task[None]]:
    """The worker's `run()` in the background for the block; stopped (bounded) after."""
    task = asyncio.create_task(worker.run())
    try:
        yield task
    finally:
        worker.stop()
        try:
            async with asyncio.timeout(10):
                await task
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.asynccontextmanager
async def fresh_store(stack: Stack, op_timeout_s: float = 2.0) -> AsyncIterator[AuditStore]:
    """A store with fresh tables (reached through the proxy), dropped afterwards."""
    name = f"audit_t_{uuid.uuid4().hex[:10]}"
    settings = Settings(database_url=stack.urls.database_url, db_op_timeout_s=op_timeout_s)
    engine = make_engine(database_config(settings))
    store = AuditStore(
        engine, table=name, dead_letter_table=f"{name}_dl", op_timeout_s=op_timeout_s
    )
    await store.ensure_schema()
    try:
        yield store
    finally:
        async with await psycopg.AsyncConnection.connect(
            stack.urls.database_direct_url, autocommit=True, connect_timeout=5
        ) as conn:
            await conn.execute(f"DROP TABLE IF EXISTS {name}, {name}_dl")
        await engine.dispose()


async def rows_per_event(stack: Stack, table: str) -> dict[uuid.UUID, int]:
    """The truth for `table`, over the direct URL."""
    sql = f"SELECT event_id, count(*) FROM {table} GROUP BY event_id"
    async with await psycopg.AsyncConnection.connect(
        stack.urls.database_direct_url, connect_timeout=5
    ) as conn:
        rows = await (await conn.execute(sql)).fetchall()
    return {row[0]: int(row[1]) for row in rows}
