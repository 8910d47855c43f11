"""ResilientAudit with fake queue and store and a real journal: order, timeouts, breakers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import create_async_engine

from reference.audit.event import AuditEvent
from reference.audit.journal import Journal, JournalConfig
from reference.audit.journal_format import list_segments, read_segment
from reference.audit.queue import AuditQueue
from reference.audit.resilient import AuditUnavailable, ResilientAudit
from reference.audit.store import AuditStore
from reference.breaker import CircuitState
from reference.clock import SYSTEM_CLOCK, Clock, FakeClock
from reference.config import Settings
from reference.metrics import ResilienceMetrics
from reference.service.configs import audit_config, breakers

TIMEOUT = 0.05


class FakeQueue(AuditQueue):
    """mode: 'ok', 'hang' (never answers) or 'error' (connection refused)."""

    def __init__(self, mode: str) -> None:
        super().__init__(aioredis.Redis(), "audit:test")
        self.mode = mode
        self.published: list[AuditEvent] = []
        self.cancelled = 0

    async def publish(self, event: AuditEvent) -> str:
        if self.mode == "error":
            raise ConnectionError("refused")
        if self.mode == "hang":
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        self.published.append(event)
        return "1-0"


class FakeStore(AuditStore):
    """mode: 'ok', 'hang' (times out by itself, like run_bounded) or 'error'."""

    def __init__(self, mode: str) -> None:
        super().__init__(create_async_engine("postgresql+psycopg://nobody@127.0.0.1:1/none"))
        self.mode = mode
        self.inserted: list[AuditEvent] = []
        self.calls = 0

    async def insert_one(
        self, event: AuditEvent, path: str, *, timeout_s: float | None = None
    ) -> int:
        self.calls += 1
        if self.mode == "error":
            raise OSError("connection refused")
        if self.mode == "hang":
            await asyncio.sleep(timeout_s or 1.0)
            raise TimeoutError
        self.inserted.append(event)
        return 1

    async def insert_many(
        self, events: Sequence[AuditEvent], path: str, *, timeout_s: float | None = None
    ) -> int:
        """The db path's group commit: one call per batch, same modes as `insert_one`."""
        self.calls += 1
        if self.mode == "error":
            raise OSError("connection refused")
        if self.mode == "hang":
            await asyncio.sleep(timeout_s or 1.0)
            raise TimeoutError
        self.inserted.extend(events)
        return len(events)


def _audit(settings: Settings, clock: Clock = SYSTEM_CLOCK, **parts: Any) -> ResilientAudit:
    """A ResilientAudit configured from `settings` as the service builds it."""
    redis_breaker, db_breaker = breakers(settings, clock)
    return ResilientAudit(
        audit_config(settings), redis_breaker=redis_breaker, db_breaker=db_breaker, **parts
    )


def _settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "audit_timeout_s": TIMEOUT,
        "breaker_failure_threshold": 3,
        "breaker_reset_timeout_s": 60.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


async def _journal(tmp_path: Path) -> Journal:
    journal = Journal(JournalConfig(tmp_path / "journal", fsync=False), SYSTEM_CLOCK)
    await journal.open()
    return journal


def _journaled(journal: Journal) -> list[bytes]:
    return [r.payload for _, p in list_segments(journal.directory) for r in read_segment(p).records]


def _event(i: int = 0) -> AuditEvent:
    return AuditEvent.new("a", "update", "e", str(i))


async def test_queue_first_when_it_works(tmp_path: Path) -> None:
    """A healthy queue takes the event; nothing else is tried; the metric counts it."""
    queue, store, metrics = FakeQueue("ok"), FakeStore("ok"), ResilienceMetrics()
    journal = await _journal(tmp_path)
    audit = _audit(_settings(), queue=queue, store=store, journal=journal, metrics=metrics)
    event = _event()
    assert await audit.record(event) == "queue"
    await journal.close()
    assert queue.published == [event] and store.calls == 0 and _journaled(journal) == []
    assert audit.paths == ("queue", "db", "file")
    snapshot = metrics.snapshot()
    assert (snapshot.queue_failures, snapshot.sync_fallbacks, snapshot.file_backups) == (0, 0, 0)


async def test_hanging_queue_is_cancelled_and_db_takes_over(tmp_path: Path) -> None:
    """An XADD that never answers is cancelled at the timeout; the database takes the event."""
    queue, store, metrics = FakeQueue("hang"), FakeStore("ok"), ResilienceMetrics()
    audit = _audit(_settings(), queue=queue, store=store, metrics=metrics)
    started = time.monotonic()
    assert await audit.record(_event()) == "db"
    assert time.monotonic() - started < TIMEOUT + 0.5
    assert queue.cancelled == 1
    snapshot = metrics.snapshot()
    assert (snapshot.queue_failures, snapshot.sync_fallbacks, snapshot.redis_failures) == (1, 1, 1)


async def test_open_breakers_make_an_outage_cheap(tmp_path: Path) -> None:
    """After `threshold` timeouts each breaker opens: later events skip straight to the file."""
    clock = FakeClock()
    queue, store = FakeQueue("hang"), FakeStore("hang")
    journal = await _journal(tmp_path)
    audit = _audit(_settings(), clock, queue=queue, store=store, journal=journal)
    for i in range(3):
        assert await audit.record(_event(i)) == "file"
    assert audit.redis_breaker.state is CircuitState.OPEN
    assert audit.db_breaker.state is CircuitState.OPEN
    started = time.monotonic()
    for i in range(3, 20):
        assert await audit.record(_event(i)) == "file"
    assert time.monotonic() - started < TIMEOUT  # no attempt waits any more
    assert (queue.cancelled, store.calls) == (3, 3)
    await journal.close()
    assert len(_journaled(journal)) == 20


async def test_no_durable_path_raises_with_reasons(tmp_path: Path) -> None:
    """Queue down, database down, journal not open: AuditUnavailable names every reason."""
    metrics = ResilienceMetrics()
    journal = Journal(JournalConfig(tmp_path / "never-opened"), SYSTEM_CLOCK)
    audit = _audit(
        _settings(),
        queue=FakeQueue("error"),
        store=FakeStore("error"),
        journal=journal,
        metrics=metrics,
    )
    event = _event()
    with pytest.raises(AuditUnavailable) as info:
        await audit.record(event)
    assert info.value.event_id == event.event_id
    assert set(info.value.reasons) == {"queue", "db", "file"}
    assert "refused" in info.value.reasons["queue"]
    assert "journal is new" in info.value.reasons["file"]
    assert metrics.snapshot().queue_failures == 1


async def test_failed_journal_append_is_not_acknowledged(tmp_path: Path) -> None:
    """A journal whose segment vanished under it raises: the event is refused, not acked."""
    journal = await _journal(tmp_path)
    audit = _audit(_settings(), queue=FakeQueue("error"), journal=journal)
    assert await audit.record(_event(0)) == "file"
    active = journal.active_segment
    assert active is not None
    active.unlink()  # the record would be written to a file nobody can read
    with pytest.raises(AuditUnavailable) as info:
        await audit.record(_event(1))
    assert "file" in info.value.reasons
    await journal.close()


async def test_settings_disable_paths(tmp_path: Path) -> None:
    """DISABLE_REDIS skips the queue; sync fallback and file backup switch their paths off."""
    queue, store = FakeQueue("ok"), FakeStore("ok")
    journal = await _journal(tmp_path)
    try:
        audit = _audit(_settings(disable_redis=True), queue=queue, store=store, journal=journal)
        assert audit.paths == ("db", "file")
        assert await audit.record(_event()) == "db"
        only_file = _audit(
            _settings(audit_sync_fallback=False), queue=FakeQueue("error"), store=store,
            journal=journal,
        )  # fmt: skip
        assert only_file.paths == ("queue", "file")
        assert await only_file.record(_event(1)) == "file"
        nothing = _audit(
            _settings(audit_file_backup=False, audit_sync_fallback=False),
            queue=FakeQueue("error"),
            store=store,
            journal=journal,
        )
        with pytest.raises(AuditUnavailable):
            await nothing.record(_event(2))
    finally:
        await journal.close()
    assert queue.published == [] and len(store.inserted) == 1
