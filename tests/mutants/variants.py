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
    reason: str | None = None
    """A regular expression the checker's summary must match (the intended reason)."""


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


def _refuse_audit_writes_during_faults() -> None:
    from reference.audit.event import AuditEvent
    from reference.audit.resilient import AuditUnavailable, ResilientAudit

    async def record(self: ResilientAudit, event: AuditEvent) -> object:
        path, attempt = self._attempts[0]  # the first path only: no fallback
        try:
            await attempt(event)
        except Exception as exc:
            raise AuditUnavailable(event.event_id, {path: repr(exc)}) from exc
        return path

    ResilientAudit.record = record  # type: ignore[method-assign,assignment]


def _slow_failures() -> None:
    import asyncio

    from reference.cache import HybridCache

    original = HybridCache.get

    async def get(self: HybridCache, key: str) -> Any:
        if self._l2_outage:  # Redis is out: hang, then fail (instead of serving L1)
            await asyncio.sleep(3.0)
            raise RuntimeError("cache unavailable")
        return await original(self, key)

    HybridCache.get = get  # type: ignore[method-assign]


def _empty_cache_fallback() -> None:
    from reference.cache import HybridCache

    original = HybridCache.get

    async def get(self: HybridCache, key: str) -> Any:
        if self._l2_outage:  # Redis is out: a miss, instead of what L1 holds
            return None
        return await original(self, key)

    HybridCache.get = get  # type: ignore[method-assign]


def _stale_after_overwrite() -> None:
    from reference.cache import HybridCache

    original = HybridCache.set

    async def set_(self: HybridCache, key: str, value: Any, ttl_s: float | None = None) -> bool:
        if self.in_l1(key):  # already cached: the overwrite is acknowledged and dropped
            return True
        return await original(self, key, value, ttl_s)

    HybridCache.set = set_  # type: ignore[method-assign]


def _corrupts_one_field() -> None:
    from sqlalchemy import text

    from reference.audit.store import AuditStore

    original = AuditStore.__init__

    def init(self: AuditStore, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        for name, value in list(vars(self).items()):  # every INSERT stores upper(actor)
            sql = getattr(value, "text", value)
            if isinstance(sql, str) and "INSERT" in sql and "actor" in sql:
                sql = sql.replace("d->>'actor'", "upper(d->>'actor')")
                sql = sql.replace(":actor,", "upper(:actor),")
                setattr(self, name, text(sql) if hasattr(value, "text") else sql)

    AuditStore.__init__ = init  # type: ignore[method-assign]


def _recovery_only_by_admin() -> None:
    import asyncio

    from reference.audit.recovery import RecoveryJob

    async def run_forever(self: RecoveryJob) -> None:
        await asyncio.Event().wait()  # the scheduled job never runs; only POST /admin/recovery

    RecoveryJob.run_forever = run_forever  # type: ignore[method-assign]


MUTANTS: dict[str, Mutant] = {
    m.name: m
    for m in (
        Mutant(
            "cache-without-timeouts",
            "Redis calls have no useful timeout",
            "redis-blackhole",
            "latency",
            env={"REDIS_OP_TIMEOUT_MS": "60000"},
            reason=r"fault: p9[59] \d+\.\d+s > ",
        ),
        Mutant(
            "breaker-never-opens",
            "the breaker ignores failures",
            "redis-blackhole",
            "breaker",
            env={"CIRCUIT_BREAKER_FAILURE_THRESHOLD": "1000000"},
            reason=r"the breaker never opened",
        ),
        Mutant(
            "half-open-without-limit",
            "HALF_OPEN admits every caller as a trial",
            "redis-blackhole",
            "latency",
            patch=_half_open_without_limit,
            reason=r"fault: p95 \d+\.\d+s > 0\.100s",
        ),
        Mutant(
            "ack-without-durable-write",
            "the journal acknowledges without writing",
            "all-down",
            "audit",
            patch=_ack_without_durable_write,
            reason=r"[1-9]\d* lost",
        ),
        Mutant(
            "xack-before-commit",
            "the worker acknowledges stream entries before commit",
            "target-sigkill",
            "audit",
            patch=_xack_before_commit,
            reason=r"[1-9]\d* lost",
        ),
        Mutant(
            "no-idempotency-key",
            "audit_log has no primary key and no ON CONFLICT",
            "redis-latency",
            "audit",
            patch=_no_idempotency_key,
            reason=r"[1-9]\d* duplicated",
        ),
        Mutant(
            "no-l1-flush-on-reconnect",
            "L1 is kept after missing invalidations",
            "two-instances-invalidation",
            "staleness",
            patch=_no_l1_flush_on_reconnect,
            reason=r"^after heal: [1-9]\d* stale reads",
        ),
        Mutant(
            "health-always-healthy",
            "/health always says HEALTHY",
            "redis-down",
            "health",
            patch=_health_always_healthy,
            reason=r"[1-9]\d* of \d+ polls wrong",
        ),
        Mutant(
            "redis-without-aof",
            "Redis runs without AOF (SIGKILL loses the stream)",
            "redis-sigkill",
            "audit",
            stack={"redis_aof": False},
            reason=r"[1-9]\d* lost",
        ),
        Mutant(
            "refuses-audit-writes-during-faults",
            "no fallback path: audit writes get 503 while Redis is down",
            "redis-down",
            "write-availability",
            patch=_refuse_audit_writes_during_faults,
            reason=r"audit: [1-9]\d* refused \+ \d+ unknown of \d+ in fault window 1",
        ),
        Mutant(
            "slow-failures",
            "reads hang 3 s, then fail, while Redis is out (counted at the time waited)",
            "redis-down",
            "latency",
            patch=_slow_failures,
            reason=r"fault: p99 [3-9]\.\d+s > 0\.500s",
        ),
        Mutant(
            "empty-cache-fallback",
            "reads miss (404) while Redis is out instead of serving L1",
            "redis-down",
            "cache-availability",
            patch=_empty_cache_fallback,
            reason=r"[1-9]\d* misses of written keys in the fault phase \(max 0\)",
        ),
        Mutant(
            "stale-after-overwrite",
            "an overwrite of a cached key is acknowledged and dropped",
            "two-instances-invalidation",
            "staleness",
            patch=_stale_after_overwrite,
            reason=r"after heal: [1-9]\d* stale reads",
        ),
        Mutant(
            "corrupts-one-field",
            "audit rows are stored with the actor changed (event_id kept)",
            "postgres-down",
            "audit",
            patch=_corrupts_one_field,
            reason=r"[1-9]\d* corrupted",
        ),
        Mutant(
            "recovery-only-by-admin",
            "the journal is replayed only when /admin/recovery is called",
            "recovery-drain",
            "audit",
            patch=_recovery_only_by_admin,
            reason=r"[1-9]\d* pending",
        ),
        Mutant(
            "journal-without-fsync",
            "the journal acknowledges after write(2), without fsync (a power cut loses it)",
            "target-powercut",
            "audit",
            patch=_journal_without_fsync,
            loses=True,
            reason=r"[1-9]\d* lost",
        ),
        Mutant(
            "journal-without-dir-fsync",
            "a new journal segment's directory is never fsynced (a power cut unlinks it)",
            "target-powercut",
            "audit",
            patch=_journal_without_dir_fsync,
            loses=True,
            reason=r"[1-9]\d* lost",
        ),
        Mutant(
            "redis-appendfsync-everysec",
            "the stack's Redis fsyncs its AOF once a second (a power cut loses the last second)",
            "redis-powercut",
            "audit",
            stack={"redis_appendfsync": "everysec"},
            loses=True,
            reason=r"[1-9]\d* lost",
        ),
    )
}
