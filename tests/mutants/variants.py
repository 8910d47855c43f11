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
            "redis-without-aof",
            "Redis runs without AOF (SIGKILL loses the stream)",
            "redis-sigkill",
            "audit",
            stack={"redis_aof": False},
        ),
    )
}
