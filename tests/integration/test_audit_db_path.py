"""The audit's database path without a ping per insert: group commit and dead connections.

- Group commit under a PostgreSQL black hole (real Toxiproxy): 64 writers through the
  database path only; no caller is acknowledged for an event that did not commit. A
  variant that acknowledges a batch as soon as it is sent is caught by the same check.
- A connection left over from an outage (Toxiproxy closes it) does not fail the first
  operation after healing: the pool is discarded and the operation retried once. The
  same run without that retry fails, which proves the outage really killed it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from reference.audit.db import make_engine, run_bounded
from reference.audit.group_commit import GroupCommitter, _Waiter
from reference.audit.resilient import AuditUnavailable, ResilientAudit
from reference.audit.store import AuditStore
from reference.config import Settings
from reference.service.configs import audit_config, breakers, database_config
from scenarios.faults import FaultInjector, FaultSpec
from scenarios.stack import Stack
from tests.integration.audit_support import audit_rig, make_event, rig_settings

pytestmark = pytest.mark.integration

WRITERS = 64


class AckOnSend(GroupCommitter):
    """Broken variant: acknowledges a batch's callers once it is sent, before its commit."""

    async def _commit(self, batch: list[_Waiter]) -> None:
        for _, future in batch:
            if not future.done():
                future.set_result(None)
        await super()._commit(batch)


def _db_only(
    settings: Settings, store: AuditStore, committer: GroupCommitter | None = None
) -> ResilientAudit:
    """The audit with the database path only, configured as the service builds it."""
    redis_breaker, db_breaker = breakers(settings)
    return ResilientAudit(
        audit_config(settings),
        redis_breaker=redis_breaker,
        db_breaker=db_breaker,
        store=store,
        db_committer=committer,
    )


async def _writers_through_fault(
    audit: ResilientAudit, stack: Stack
) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    """64 writers record events for ~2.4 s; PostgreSQL is a black hole from 0.6 s to 1.8 s.
    Returns the acknowledged and the refused event ids."""
    acked: set[uuid.UUID] = set()
    refused: set[uuid.UUID] = set()
    started = time.monotonic()

    async def writer(w: int) -> None:
        k = 0
        while time.monotonic() - started < 2.4:
            event = make_event(w * 100_000 + k, writer=w)
            k += 1
            try:
                assert await audit.record(event) == "db"
            except AuditUnavailable:
                refused.add(event.event_id)
                await asyncio.sleep(0.02)
            else:
                acked.add(event.event_id)

    injector = FaultInjector.on_stack(stack)

    async def fault() -> None:
        await asyncio.sleep(0.6)
        await asyncio.to_thread(injector.apply, FaultSpec("blackhole", "postgres"))
        await asyncio.sleep(1.2)
        assert await asyncio.to_thread(injector.revert_all) == []

    try:
        async with asyncio.timeout(30):
            await asyncio.gather(fault(), *(writer(w) for w in range(WRITERS)))
    finally:
        injector.revert_all()
    return acked, refused


def acknowledged_not_committed(
    acked: set[uuid.UUID], committed: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """The check: acknowledged events missing from the table."""
    return acked - set(committed)


async def test_group_commit_acknowledges_only_committed_events_under_black_hole(
    stormproof_stack: Stack, tmp_path: Path
) -> None:
    """Reference: every acknowledged event is in audit_log after a black hole mid-burst,
    batches really were shared; the ack-on-send variant loses acknowledged events."""
    async with audit_rig(stormproof_stack, tmp_path) as rig:
        audit = _db_only(rig.settings, rig.store)
        acked, refused = await _writers_through_fault(audit, stormproof_stack)
        committer = audit.db_committer
        assert committer is not None
        assert committer.stats.largest_batch > 1, committer.stats  # group commit happened
        assert refused, "the black hole never refused anything"
        assert len(acked) > 100, len(acked)
        rows = await rig.rows_per_event()
        assert acknowledged_not_committed(acked, list(rows)) == set()
        assert set(rows) <= acked | refused  # nothing nobody wrote

    async with audit_rig(stormproof_stack, tmp_path) as rig:
        broken = _db_only(
            rig.settings,
            rig.store,
            AckOnSend(rig.store, "db", rig.settings.audit_timeout_s),
        )
        acked, _ = await _writers_through_fault(broken, stormproof_stack)
        lost = acknowledged_not_committed(acked, list(await rig.rows_per_event()))
        assert lost, "the ack-on-send variant lost nothing: the check cannot fail"


async def _driver_pid(conn: AsyncConnection) -> int:
    """Like the drain's COPY: straight on the psycopg connection, past SQLAlchemy."""
    raw = await conn.get_raw_connection()
    cursor = await raw.driver_connection.execute("SELECT pg_backend_pid()")  # type: ignore[union-attr]
    row = await cursor.fetchone()
    return int(row[0])


async def _first_call_after_outage(
    stack: Stack, tmp_path: Path, *, retry_dead: bool, driver: bool = False
) -> float:
    """Fill a pool, cut PostgreSQL (Toxiproxy closes the connections), heal, then one
    operation; returns how long it took (raises what it raised)."""
    settings = rig_settings(stack, tmp_path)
    engine = make_engine(database_config(settings), pool_size=4, max_overflow=0)

    async def pid(conn: AsyncConnection) -> int:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())

    injector = FaultInjector.on_stack(stack)
    try:
        await asyncio.gather(*(run_bounded(engine, pid, 5) for _ in range(4)))
        injector.apply(FaultSpec("down", "postgres"))
        await asyncio.sleep(0.3)
        assert injector.revert_all() == []
        started = time.monotonic()
        await run_bounded(engine, _driver_pid if driver else pid, 5, retry_dead=retry_dead)
        return time.monotonic() - started
    finally:
        injector.revert_all()
        await engine.dispose()


@pytest.mark.parametrize("driver", [False, True], ids=["sqlalchemy", "driver"])
async def test_connection_left_over_from_an_outage_does_not_fail_the_first_call(
    stormproof_stack: Stack, tmp_path: Path, driver: bool
) -> None:
    """Reference: the first operation after healing succeeds, at the cost of one reconnect,
    whether it goes through SQLAlchemy or straight to the driver. Without the retry on a
    dead pooled connection, the same operation fails (the outage really killed it)."""
    seconds = await _first_call_after_outage(
        stormproof_stack, tmp_path, retry_dead=True, driver=driver
    )
    assert seconds < 2.0, seconds
    with pytest.raises((DBAPIError, psycopg.OperationalError)) as failed:
        await _first_call_after_outage(stormproof_stack, tmp_path, retry_dead=False, driver=driver)
    if isinstance(failed.value, DBAPIError):
        assert failed.value.connection_invalidated, failed.value
    else:
        assert "closed" in str(failed.value) or "lost" in str(failed.value), failed.value
