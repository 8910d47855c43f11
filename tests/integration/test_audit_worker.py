"""The queue worker on real Redis and PostgreSQL: ack after commit, redelivery, dead letters."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.exc import DataError

from reference.audit.event import AuditEvent
from reference.audit.queue import EVENT_FIELD, QueueWorker
from reference.audit.store import AuditStore
from reference.service.configs import worker_config
from scenarios.stack import Stack
from tests.integration.audit_support import WORKER_BLOCK_S, Rig, audit_rig, make_event

pytestmark = pytest.mark.integration


class FlakyStore(AuditStore):
    """Fails the next `failures` batch inserts with a timeout (a transient error)."""

    failures = 0

    async def insert_many(
        self, events: Sequence[AuditEvent], path: str, *, timeout_s: float | None = None
    ) -> int:
        if type(self).failures > 0:
            type(self).failures -= 1
            raise TimeoutError("injected: database operation timed out")
        return await super().insert_many(events, path, timeout_s=timeout_s)


class PoisonStore(AuditStore):
    """Rejects events whose actor is 'poison' with a data error, in batches and alone."""

    @staticmethod
    def _check(events: Sequence[AuditEvent]) -> None:
        if any(e.actor == "poison" for e in events):
            raise DataError("INSERT ...", None, ValueError("injected: invalid input"))

    async def insert_many(
        self, events: Sequence[AuditEvent], path: str, *, timeout_s: float | None = None
    ) -> int:
        self._check(events)
        return await super().insert_many(events, path, timeout_s=timeout_s)

    async def insert_one(
        self, event: AuditEvent, path: str, *, timeout_s: float | None = None
    ) -> int:
        self._check([event])
        return await super().insert_one(event, path, timeout_s=timeout_s)


async def _publish(rig: Rig, events: Sequence[AuditEvent]) -> list[str]:
    stream = rig.settings.audit_queue_stream
    return [
        _s(await rig.worker_redis.xadd(stream, {EVENT_FIELD: e.to_json_bytes()})) for e in events
    ]


async def _pending(rig: Rig) -> dict[str, int]:
    """Pending entry id -> times delivered."""
    cfg = rig.worker.config
    try:
        rows = await rig.worker_redis.xpending_range(cfg.stream, cfg.group, "-", "+", 1000)
    except Exception:
        return {}
    return {_s(r["message_id"]): int(r["times_delivered"]) for r in rows}


async def _dead_letters(rig: Rig) -> list[tuple[str, uuid.UUID | None, str, int]]:
    sql = (
        f"SELECT entry_id, event_id, reason, deliveries FROM {rig.store.dead_letter_table} "
        "ORDER BY entry_id"
    )
    async with await psycopg.AsyncConnection.connect(
        rig.stack.urls.database_direct_url, connect_timeout=5
    ) as conn:
        rows = await (await conn.execute(sql)).fetchall()
    return [(str(r[0]), r[1], str(r[2]), int(r[3])) for r in rows]


def _s(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _worker(rig: Rig, consumer: str, **overrides: object) -> QueueWorker:
    config = worker_config(
        rig.settings,
        consumer=consumer,
        block_s=WORKER_BLOCK_S,
        redis_timeout_s=1.0,
        **overrides,
    )
    return QueueWorker(rig.worker_redis, rig.store, config)


async def test_ack_only_after_commit(stormproof_stack: Stack, tmp_path: Path) -> None:
    """An entry whose insert failed stays pending (not acked, not deleted) and is retried."""
    FlakyStore.failures = 1
    async with audit_rig(stormproof_stack, tmp_path, store_class=FlakyStore) as rig:
        events = [make_event(i) for i in range(3)]
        ids = await _publish(rig, events)
        with pytest.raises(TimeoutError):
            await rig.worker.drain_once()
        assert await rig.rows_per_event() == {}
        assert set(await _pending(rig)) == set(ids)
        assert await rig.worker_redis.xlen(rig.settings.audit_queue_stream) == 3
        assert await rig.worker.backlog() == 3

        assert await rig.worker.drain_once() == 3
        assert await rig.rows_per_event() == {e.event_id: 1 for e in events}
        assert await _pending(rig) == {}
        assert await rig.worker_redis.xlen(rig.settings.audit_queue_stream) == 0
        assert await rig.worker.backlog() == 0


async def test_failed_batch_is_redelivered_to_another_worker(
    stormproof_stack: Stack, tmp_path: Path
) -> None:
    """A worker that fails and dies leaves its batch pending; a live one claims and stores it."""
    FlakyStore.failures = 1
    async with audit_rig(stormproof_stack, tmp_path, store_class=FlakyStore) as rig:
        events = [make_event(i) for i in range(5)]
        ids = await _publish(rig, events)
        with pytest.raises(TimeoutError):
            await rig.worker.drain_once()  # ... and then this worker "dies"
        survivor = _worker(rig, "survivor", claim_idle_s=0.3)
        await asyncio.sleep(0.4)
        assert await survivor.drain_once() == 5
        assert await rig.rows_per_event() == {e.event_id: 1 for e in events}
        assert await _pending(rig) == {}
        assert await _dead_letters(rig) == []
        assert len(ids) == 5


async def test_poison_entry_dead_lettered_after_max_rejections(
    stormproof_stack: Stack, tmp_path: Path
) -> None:
    """A row the database rejects is retried (left pending) until rejected N times, then
    dead-lettered with the database's reason and acked; the healthy entries of its batch
    are stored at once."""
    async with audit_rig(
        stormproof_stack, tmp_path, store_class=PoisonStore, audit_max_deliveries=3
    ) as rig:
        good = [make_event(i) for i in range(4)]
        poison = AuditEvent.new("poison", "update", "beneficio", "x")
        ids = await _publish(rig, [*good[:2], poison, *good[2:]])
        poison_id = ids[2]

        assert await rig.worker.drain_once() == 4
        assert await rig.rows_per_event() == {e.event_id: 1 for e in good}
        assert await _pending(rig) == {poison_id: 1}
        assert await rig.worker.drain_once() == 0
        assert await _pending(rig) == {poison_id: 2}
        assert await rig.worker.drain_once() == 1
        assert await _pending(rig) == {}
        [(entry_id, event_id, reason, count)] = await _dead_letters(rig)
        assert (entry_id, event_id, count) == (poison_id, poison.event_id, 3)
        assert "rejected by the database 3 times" in reason
        assert await rig.worker_redis.xlen(rig.settings.audit_queue_stream) == 0


async def test_malformed_entries_dead_lettered_without_crashing(
    stormproof_stack: Stack, tmp_path: Path
) -> None:
    """Entries that are not events go to the dead letter at once; good ones are stored."""
    async with audit_rig(stormproof_stack, tmp_path) as rig:
        stream = rig.settings.audit_queue_stream
        bad_json = _s(await rig.worker_redis.xadd(stream, {EVENT_FIELD: b"{not json"}))
        no_field = _s(await rig.worker_redis.xadd(stream, {b"other": b"x"}))
        invalid = _s(await rig.worker_redis.xadd(stream, {EVENT_FIELD: b'{"event_id": "nope"}'}))
        event = make_event(1)
        await _publish(rig, [event])
        assert await rig.worker.drain_once() == 4
        assert await rig.rows_per_event() == {event.event_id: 1}
        letters = {row[0]: row[2] for row in await _dead_letters(rig)}
        assert set(letters) == {bad_json, no_field, invalid}
        assert all(reason.startswith("malformed") for reason in letters.values())
        assert await rig.worker.backlog() == 0


async def test_autoclaim_takes_over_a_dead_consumers_entries(
    stormproof_stack: Stack, tmp_path: Path
) -> None:
    """Entries read by a consumer that died are claimed once idle long enough, and stored."""
    async with audit_rig(stormproof_stack, tmp_path) as rig:
        cfg = rig.worker.config
        await rig.worker_redis.xgroup_create(cfg.stream, cfg.group, id="0", mkstream=True)
        events = [make_event(i) for i in range(20)]
        await _publish(rig, events)
        taken: Any = await rig.worker_redis.xreadgroup(
            cfg.group, "dead-consumer", {cfg.stream: ">"}, count=100
        )
        assert len(taken[0][1]) == 20
        assert await rig.worker.backlog() == 20

        impatient = _worker(rig, "live", claim_idle_s=0.5)
        assert await impatient.drain_once() == 0  # not idle long enough yet
        assert await rig.rows_per_event() == {}
        await asyncio.sleep(0.6)
        assert await impatient.drain(timeout_s=5) == 20
        assert await rig.rows_per_event() == {e.event_id: 1 for e in events}
        assert await _pending(rig) == {}


async def test_worker_recreates_a_lost_group_and_backlog_counts(
    stormproof_stack: Stack, tmp_path: Path
) -> None:
    """backlog() counts undelivered + pending; a group lost with Redis's data is re-created."""
    async with audit_rig(stormproof_stack, tmp_path) as rig:
        cfg = rig.worker.config
        first = [make_event(i) for i in range(6)]
        await _publish(rig, first)
        assert await rig.worker.backlog() == 6
        assert await rig.worker.drain_once() == 6
        assert await rig.worker.backlog() == 0
        await rig.worker_redis.delete(cfg.stream)  # Redis lost everything (no AOF)
        second = [make_event(i) for i in range(3)]
        await _publish(rig, second)
        assert await rig.worker.backlog() == 3
        with pytest.raises(Exception, match="NOGROUP"):
            await rig.worker.drain_once()
        assert await rig.worker.drain(timeout_s=5) == 3
        assert set(await rig.rows_per_event()) == {e.event_id for e in first + second}


async def test_run_loop_survives_outages_and_stops(stormproof_stack: Stack, tmp_path: Path) -> None:
    """run() keeps going through a Redis and a PostgreSQL outage and returns on stop()."""
    async with audit_rig(stormproof_stack, tmp_path) as rig:
        task = asyncio.create_task(rig.worker.run())
        try:
            events = [make_event(i) for i in range(10)]
            await _publish(rig, events[:5])
            with stormproof_stack.redis_proxy.down():
                await asyncio.sleep(0.8)
            with stormproof_stack.postgres_proxy.down():
                await _publish(rig, events[5:])  # Redis is up: the worker reads, cannot store
                await asyncio.sleep(0.8)
            assert not task.done()
            for _ in range(100):  # up to ~10 s for the worker to catch up
                if len(await rig.rows_per_event()) == 10:
                    break
                await asyncio.sleep(0.1)
        finally:
            rig.worker.stop()
            async with asyncio.timeout(5):
                await task
        assert await rig.rows_per_event() == {e.event_id: 1 for e in events}


async def test_missing_table_never_dead_letters_valid_events(
    stormproof_stack: Stack, tmp_path: Path
) -> None:
    """A missing `audit_log` (the database's state, not the events') fails the pass: no
    valid event is dead-lettered however often the worker retries, and once the table is
    back every event lands."""
    async with audit_rig(stormproof_stack, tmp_path, audit_max_deliveries=2) as rig:
        events = [make_event(i) for i in range(5)]
        await _publish(rig, events)
        url = stormproof_stack.urls.database_direct_url
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"ALTER TABLE {rig.store.table} RENAME TO {rig.store.table}_away")
        try:
            for _ in range(6):
                with pytest.raises(Exception):  # noqa: B017 - any failure fails the pass
                    await rig.worker.drain_once()
            assert await _dead_letters(rig) == []
        finally:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f"ALTER TABLE {rig.store.table}_away RENAME TO {rig.store.table}")
        assert await rig.worker.drain_once() == 5
        assert await rig.rows_per_event() == {e.event_id: 1 for e in events}
        assert await _dead_letters(rig) == []
