"""Deliberately broken variants of the reference, one per guarantee the harness checks.

Each variant is run as the target (`python -m tests.mutants.serve NAME`) against the
scenario meant for it, and the named checker must flag it. A checker that cannot fail is
a defect; so is a variant nobody catches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Mutant:
    name: str
    breaks: str
    scenario: str
    checker: str
    env: dict[str, str] = field(default_factory=dict)
    patch: Callable[[], None] | None = None
    stack: dict[str, Any] = field(default_factory=dict)
    loses: bool = False  # the audit checker must count lost > 0 (not just fail)


def _half_open_without_limit() -> None:
    from reference import breaker as module

    def try_acquire(self: Any) -> Any:
        state = self._state
        if state is module._CLOSED:
            return self._permit
        if state is module._OPEN and not self._maybe_half_open():
            return None
        self._trials += 1  # no limit: every caller becomes a trial
        return module.Permit(self, self._generation, trial=True)

    module.CircuitBreaker.try_acquire = try_acquire  # type: ignore[method-assign]


def _ack_without_durable_write() -> None:
    from reference.audit.journal import Journal

    async def append(self: Journal, payload: bytes) -> None:
        return None  # "acknowledged" without writing anything

    Journal.append = append  # type: ignore[method-assign]


def _xack_before_commit() -> None:
    from reference.audit.queue import QueueWorker

    async def drain_once(self: QueueWorker) -> int:
        async with self._pass_lock:
            batch = self._held or await self.read_batch()
            if not batch:
                return 0
            await self.ack_batch(batch.ids)  # acknowledged before the commit
            self._held = batch
            done = await self.store_batch(batch)
            self._held = None
            return len(done)

    QueueWorker.drain_once = drain_once  # type: ignore[method-assign]


def _no_idempotency_key() -> None:
    from reference.audit.store import AuditStore

    AuditStore.EVENT_ID_COLUMN = "event_id uuid NOT NULL"
    AuditStore.ON_CONFLICT = ""


def _no_l1_flush_on_reconnect() -> None:
    from reference.cache import HybridCache

    def flush_on_reconnect(self: HybridCache, reason: str) -> None:
        return None

    HybridCache.flush_on_reconnect = flush_on_reconnect  # type: ignore[method-assign,assignment]


def _health_always_healthy() -> None:
    from reference import health
    from reference.service import components

    def always(**_: object) -> health.HealthStatus:
        return health.HealthStatus.HEALTHY

    health.overall_status = always
    components.overall_status = always  # type: ignore[attr-defined]


def _journal_without_fsync() -> None:
    from reference.audit.journal import JournalConfig

    def post_init(self: JournalConfig) -> None:
        object.__setattr__(self, "fsync", False)  # write, never fsync (file or directory)

    JournalConfig.__post_init__ = post_init  # type: ignore[method-assign]


def _journal_without_dir_fsync() -> None:
    from pathlib import Path

    from reference.audit.journal import Journal

    def fsync_dir(self: Journal, directory: Path) -> None:
        return None  # a new segment's directory entry is never made durable

    Journal._fsync_dir = fsync_dir  # type: ignore[method-assign]


def _redis_failures_never_counted() -> None:
    from reference.metrics import ResilienceMetrics

    def record_redis_failure(self: ResilienceMetrics) -> None:
        return None  # the failure counter (and its timestamp) never move

    ResilienceMetrics.record_redis_failure = record_redis_failure  # type: ignore[method-assign]


MUTANTS: dict[str, Mutant] = {
    m.name: m
    for m in (
        Mutant(
            "cache-without-timeouts",
            "Redis calls have no useful timeout",
            "redis-blackhole",
            "latency",
            env={"REDIS_OP_TIMEOUT_MS": "60000"},
        ),
        Mutant(
            "breaker-never-opens",
            "the breaker ignores failures",
            "redis-blackhole",
            "breaker",
            env={"CIRCUIT_BREAKER_FAILURE_THRESHOLD": "1000000"},
        ),
        Mutant(
            "half-open-without-limit",
            "HALF_OPEN admits every caller as a trial",
            "redis-blackhole",
            "latency",
            patch=_half_open_without_limit,
        ),
        Mutant(
            "ack-without-durable-write",
            "the journal acknowledges without writing",
            "all-down",
            "audit",
            patch=_ack_without_durable_write,
        ),
        Mutant(
            "xack-before-commit",
            "the worker acknowledges stream entries before commit",
            "target-sigkill",
            "audit",
            patch=_xack_before_commit,
        ),
        Mutant(
            "no-idempotency-key",
            "audit_log has no primary key and no ON CONFLICT",
            "redis-latency",
            "audit",
            patch=_no_idempotency_key,
        ),
        Mutant(
            "no-l1-flush-on-reconnect",
            "L1 is kept after missing invalidations",
            "two-instances-invalidation",
            "staleness",
            patch=_no_l1_flush_on_reconnect,
        ),
        Mutant(
            "health-always-healthy",
            "/health always says HEALTHY",
            "redis-down",
            "health",
            patch=_health_always_healthy,
        ),
        Mutant(
            "redis-failures-never-counted",
            "stormproof_redis_failures_total never moves (Prometheus cannot alert)",
            "redis-down",
            "prometheus_alerts",
            patch=_redis_failures_never_counted,
        ),
        Mutant(
            "redis-without-aof",
            "Redis runs without AOF (SIGKILL loses the stream) and the service is told to "
            "trust it anyway (the reference refuses such a queue by default)",
            "redis-sigkill",
            "audit",
            env={"AUDITORIA_QUEUE_ACCEPT_UNSAFE": "true"},
            stack={"redis_aof": False},
        ),
        Mutant(
            "journal-without-fsync",
            "the journal acknowledges after write(2), without fsync (a power cut loses it)",
            "target-powercut",
            "audit",
            patch=_journal_without_fsync,
            loses=True,
        ),
        Mutant(
            "journal-without-dir-fsync",
            "a new journal segment's directory is never fsynced (a power cut unlinks it)",
            "target-powercut",
            "audit",
            patch=_journal_without_dir_fsync,
            loses=True,
        ),
        Mutant(
            "redis-appendfsync-everysec",
            "the stack's Redis fsyncs its AOF once a second (a power cut loses the last second)",
            "redis-powercut",
            "audit",
            stack={"redis_appendfsync": "everysec"},
            loses=True,
        ),
    )
}
