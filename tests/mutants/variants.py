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
    reason: str | None = None
    """A regular expression the checker's summary must match (the intended reason)."""
    loses: bool = False  # the audit checker must count lost > 0 (not just fail)
    only: bool = False
    """The intended checker is the only one that fails (no other check sees it)."""


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


def _queue_without_wait() -> None:
    from reference.audit.stream import AuditQueue

    original = AuditQueue.__init__

    def init(self: AuditQueue, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.min_replicas = 0  # acknowledged once the primary has it: no WAIT

    AuditQueue.__init__ = init  # type: ignore[method-assign]


def _health_always_healthy() -> None:
    from reference import health
    from reference.service import components

    def always(**_: object) -> health.HealthStatus:
        return health.HealthStatus.HEALTHY

    health.overall_status = always
    components.overall_status = always  # type: ignore[attr-defined]


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


def _null_value_fallback() -> None:
    from reference.cache import HybridCache
    from reference.cache._common import CacheResult

    original = HybridCache.get

    async def get(self: HybridCache, key: str) -> Any:
        if self._l2_outage:  # Redis is out: "found", with no value (200 {"value": null})
            return CacheResult(None, "stale")
        return await original(self, key)

    HybridCache.get = get  # type: ignore[method-assign]


def _delete_keeps_l1_in_outage() -> None:
    from reference.cache import HybridCache

    original = HybridCache.delete

    async def delete(self: HybridCache, key: str) -> bool:
        if self._l2_outage:  # Redis is out: acknowledged, and L1 keeps the value
            return True
        return await original(self, key)

    HybridCache.delete = delete  # type: ignore[method-assign]


def _mangles_cached_values() -> None:
    from reference.cache import HybridCache
    from reference.cache._common import CacheResult

    original = HybridCache.get

    async def get(self: HybridCache, key: str) -> Any:
        got = await original(self, key)
        if got is None or not isinstance(got.value, dict) or "by" not in got.value:
            return got
        return CacheResult({**got.value, "by": -1}, got.source)  # `v` kept, the rest not

    HybridCache.get = get  # type: ignore[method-assign]


def _refuses_beneficios_in_outage() -> None:
    from fastapi import HTTPException

    from reference.cache import HybridCache

    original = HybridCache.delete

    async def delete(self: HybridCache, key: str) -> bool:
        if self._l2_outage and key.startswith("beneficio:"):  # after the commit, alas
            raise HTTPException(422, "beneficio cache unavailable")
        return await original(self, key)

    HybridCache.delete = delete  # type: ignore[method-assign]


def _stale_after_overwrite() -> None:
    from reference.cache import HybridCache

    original = HybridCache.set

    async def set_(self: HybridCache, key: str, value: Any, ttl_s: float | None = None) -> bool:
        if self.in_l1(key):  # already cached: the overwrite is acknowledged and dropped
            return True
        return await original(self, key, value, ttl_s)

    HybridCache.set = set_  # type: ignore[method-assign]


def _overwrite_never_reaches_redis() -> None:
    import json

    from reference.cache import HybridCache

    async def set_(self: HybridCache, key: str, value: Any, ttl_s: float | None = None) -> bool:
        ttl = self._ttl(ttl_s)
        payload = json.dumps(value, separators=(",", ":"))
        with self._lock:
            self._touch(key)
            self._put(key, json.loads(payload), ttl)  # L1 holds the new value...
        # ... but L2 is written with SET NX: an overwrite never replaces what Redis holds
        # (the invalidation is still published, so other instances drop their L1)
        return self._synced(key, await self._l2_write(key, payload, ttl, nx=True, op="set"))

    HybridCache.set = set_  # type: ignore[method-assign]


def _breaker_first_outage_only() -> None:
    from reference import breaker as module

    recovered: dict[str, bool] = {}  # per breaker name (the breaker has __slots__)
    transition, open_ = module.CircuitBreaker._transition, module.CircuitBreaker._open

    def remembering(self: Any, new: Any) -> None:
        if new is module._CLOSED and self._state is module._HALF_OPEN:
            recovered[self.name] = True  # its first outage is over
        transition(self, new)

    def opens_once(self: Any) -> None:
        if recovered.get(self.name) and self._state is module._CLOSED:
            self._failures = 0  # after one recovery it never opens again: stays CLOSED
            return
        open_(self)

    module.CircuitBreaker._transition = remembering  # type: ignore[method-assign]
    module.CircuitBreaker._open = opens_once  # type: ignore[method-assign]


WRITE_BEHIND_S = 60.0
"""The write-behind variant's flush interval: longer than any quick scenario, so what it
acknowledged is all still in memory when the target is stopped."""


def _loses_queue_on_sigterm() -> None:
    import asyncio
    import os

    from reference.audit.event import AuditEvent
    from reference.audit.resilient import ResilientAudit
    from reference.service.components import Components

    honest = ResilientAudit.record
    buffered: list[AuditEvent] = []
    flusher: list[asyncio.Task[None]] = []

    async def flush_forever(audit: ResilientAudit) -> None:
        while True:
            await asyncio.sleep(WRITE_BEHIND_S)
            while buffered:
                await honest(audit, buffered.pop(0))

    async def record(self: ResilientAudit, event: AuditEvent) -> Any:
        buffered.append(event)  # acknowledged from memory (write-behind)...
        if not flusher:
            flusher.append(asyncio.get_running_loop().create_task(flush_forever(self)))
        return "queue"

    async def stop(self: Components) -> None:
        os._exit(0)  # ... and at SIGTERM the buffer is dropped instead of flushed

    ResilientAudit.record = record  # type: ignore[method-assign]
    Components.stop = stop  # type: ignore[method-assign]


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


def _alert_never_resolves() -> None:
    from reference.alerts.evaluator import AlertEvaluator
    from reference.alerts.rules import AlertEvent

    dispatch = AlertEvaluator._dispatch

    def only_firing(self: AlertEvaluator, event: AlertEvent) -> None:
        if event.state != "resolved":  # the resolution is never sent
            dispatch(self, event)

    AlertEvaluator._dispatch = only_firing  # type: ignore[method-assign]


def _metrics_never_move() -> None:
    from reference.metrics import ResilienceMetrics

    def nothing(self: ResilienceMetrics, *args: Any) -> None:
        return None

    ResilienceMetrics.record_redis_failure = nothing  # type: ignore[method-assign]
    ResilienceMetrics.record_audit_event = nothing  # type: ignore[method-assign,assignment]


OBSERVABILITY_MUTANTS: dict[str, Mutant] = {
    m.name: m
    for m in (
        Mutant(
            "alert-never-resolves",
            "alerts fire but their resolution is never sent",
            "redis-down",
            "alerts",
            patch=_alert_never_resolves,
        ),
        Mutant(
            "metrics-never-move",
            "the Redis failure and audit path counters never move",
            "redis-down",
            "metrics",
            patch=_metrics_never_move,
        ),
    )
}
"""Variants of what an operator sees, judged by the `alerts` and `metrics` expectations."""


DRILL_MUTANTS: dict[str, Mutant] = {
    m.name: m
    for m in (
        Mutant(
            "alert-never-resolves",
            "alerts fire but their resolution is never sent",
            "redis-outage",
            "REDIS_MULTIPLE_FAILURES resolves on its own",
            patch=_alert_never_resolves,
        ),
    )
}
"""Variants judged by a drill (`scenario` names the drill, `checker` the step's sentence)."""


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
            reason=r"fault: p95 \d+\.\d+s > baseline \d+\.\d+s \+ 0\.100s",
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
            "redis-failures-never-counted",
            "stormproof_redis_failures_total never moves (Prometheus cannot alert)",
            "redis-down",
            "prometheus_alerts",
            patch=_redis_failures_never_counted,
            reason=r"REDIS_MULTIPLE_FAILURES never fired during the fault",
        ),
        Mutant(
            "redis-without-aof",
            "Redis runs without AOF (SIGKILL loses the stream) and the service is told to "
            "trust it anyway (the reference refuses such a queue by default)",
            "redis-sigkill",
            "audit",
            env={"AUDITORIA_QUEUE_ACCEPT_UNSAFE": "true"},
            stack={"redis_aof": False},
            reason=r"[1-9]\d* lost",
        ),
        Mutant(
            "queue-without-wait",
            "the queue acknowledges an XADD the primary took, without WAIT for a replica: "
            "a partitioned old primary takes events that vanish when it rejoins as a replica",
            "redis-partition",
            "audit",
            patch=_queue_without_wait,
            reason=r"[1-9]\d* lost",
            loses=True,
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
            "null-value-fallback",
            "reads answer 200 with no value while Redis is out (an independent target's "
            "fallback) instead of serving L1",
            "redis-down",
            "cache-availability",
            patch=_null_value_fallback,
            reason=r"[1-9]\d* of \d+ reads failed",
        ),
        Mutant(
            "delete-keeps-l1-in-outage",
            "a delete during a Redis outage is acknowledged and this instance's L1 keeps "
            "serving the value",
            "redis-down",
            "staleness",
            patch=_delete_keeps_l1_in_outage,
            reason=r"[1-9]\d* reads during a fault behind the same instance's own",
        ),
        Mutant(
            "mangles-cached-values",
            "reads keep the version `v` of a cached value and change its other fields",
            "redis-down",
            "staleness",
            patch=_mangles_cached_values,
            reason=r"[1-9]\d* reads of a never-written version",
        ),
        Mutant(
            "refuses-beneficios-with-422-in-outage",
            "beneficio updates answer 422 while Redis is out (an independent target's "
            "refusal, once exempt as 'provoked')",
            "redis-down",
            "write-availability",
            patch=_refuses_beneficios_in_outage,
            reason=r"beneficio_put: [1-9]\d* refused",
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
            "overwrite-never-reaches-redis",
            "a cache overwrite updates this instance's L1 but never Redis (SET NX): the "
            "instance reads its own fresh L1, Redis keeps the first version",
            "postgres-down",
            "final_read",
            patch=_overwrite_never_reaches_redis,
            only=True,
            reason=r"[1-9]\d* keys stale \(older than the last acknowledged write\) "
            r"\(not converged within 5\.0s\) \[redis: [1-9]\d*\]",
        ),
        Mutant(
            "breaker-first-outage-only",
            "the Redis breaker opens in the first outage, and after it closed never again",
            "redis-latency",
            "breaker",
            patch=_breaker_first_outage_only,
            reason=r"^window 2 \(redis-latency\): the breaker never opened$",
        ),
        Mutant(
            "loses-queue-on-sigterm",
            "audit events are acknowledged from an in-memory write-behind buffer, and the "
            "SIGTERM stop exits without flushing it (the truth is read after the stop)",
            "postgres-down",
            "audit",
            patch=_loses_queue_on_sigterm,
            loses=True,
            reason=r"[1-9]\d* lost",
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
            "the stack's Redis fsyncs its AOF once a second (a power cut loses the last second) "
            "and the service is told to trust it anyway (the reference refuses such a queue)",
            "redis-powercut",
            "audit",
            env={"AUDITORIA_QUEUE_ACCEPT_UNSAFE": "true"},
            stack={"redis_appendfsync": "everysec"},
            loses=True,
            reason=r"[1-9]\d* lost",
        ),
    )
}


# -- variants only a generated schedule finds (tests/mutants/test_property_mutants.py) ----


def _loses_audit_on_second_redis_outage() -> None:
    from reference import breaker as module
    from reference.audit.resilient import ResilientAudit

    transition = module.CircuitBreaker._transition
    # per breaker name (the breaker has __slots__). An outage is counted when a trial
    # fails (HALF_OPEN -> OPEN) for the first time since the breaker was last CLOSED, so
    # a breaker opened by a slow moment of a loaded machine, whose trial then succeeds,
    # is not an outage; a real one (>= 5 s, reset timeout 1.5 s) always fails a trial.
    outages: dict[str, int] = {}
    counted: dict[str, bool] = {}

    def counting(self: Any, new: Any) -> None:
        if new is module._CLOSED:
            counted[self.name] = False
        elif (
            self._state is module._HALF_OPEN
            and new is module._OPEN
            and not counted.get(self.name, False)
        ):
            outages[self.name] = outages.get(self.name, 0) + 1
            counted[self.name] = True
        transition(self, new)

    via_db = ResilientAudit._via_db

    def lossy_via_db(self: ResilientAudit, store: Any) -> Any:
        honest = via_db(self, store)

        async def attempt(event: Any) -> None:
            if outages.get(self.redis_breaker.name, 0) >= 2:
                return None  # "recorded" on the database path, but never written
            await honest(event)

        return attempt

    module.CircuitBreaker._transition = counting  # type: ignore[method-assign]
    ResilientAudit._via_db = lossy_via_db  # type: ignore[method-assign,assignment]


def _resends_slow_commits() -> None:
    """No idempotency key (duplicates are skipped by an in-memory set of the ids whose
    INSERT answered), and a COMMIT that failed or answered slowly (over 0.25 s) is taken
    for "not committed": the transaction is sent again in the background. Only a commit
    that landed but answered late or never (a delayed or lost PostgreSQL reply) writes an
    event twice. A commit that only looked slow because the service itself stood still
    (SIGSTOP, a stall: the event loop stopped ticking) is not resent, and an insert skips
    the ids already stored (an XADD that landed although its reply came too late, then
    written by the database path and by the queue worker), so the defect is the database
    reply's alone: a 30-example search otherwise met a Redis reply delayed at the start
    of its first multi-fault example, which duplicated one or two events: a flaky find."""
    import asyncio
    import json
    import time

    from reference.audit import db
    from reference.audit.store import AuditStore

    AuditStore.EVENT_ID_COLUMN = "event_id uuid NOT NULL"
    AuditStore.ON_CONFLICT = ""
    written: set[str] = set()
    resending: set[asyncio.Task[None]] = set()
    insert_one, insert_many = AuditStore.insert_one, AuditStore.insert_many
    copy_replay_json = AuditStore.copy_replay_json
    in_transaction = db._in_transaction

    async def again(engine: Any, op: Any, *rest: Any) -> None:
        for _ in range(60):
            await asyncio.sleep(0.5)
            try:
                async with asyncio.timeout(5):
                    await in_transaction(engine, op, *rest)
                return
            except Exception:
                continue

    def resend(engine: Any, op: Any, *rest: Any) -> None:
        task = asyncio.get_running_loop().create_task(again(engine, op, *rest))
        resending.add(task)
        task.add_done_callback(resending.discard)

    ticks = {"last": 0.0, "pause_end": 0.0}
    ticker: list[asyncio.Task[None]] = []

    async def tick() -> None:
        while True:
            now = time.monotonic()
            if now - ticks["last"] > 0.2:
                ticks["pause_end"] = now
            ticks["last"] = now
            await asyncio.sleep(0.05)

    def stood_still_since(started: float) -> bool:
        """The loop stopped ticking since `started` (a pause of the process, not of PostgreSQL)."""
        now = time.monotonic()
        return now - ticks["last"] > 0.2 or ticks["pause_end"] > started

    async def hasty(engine: Any, op: Any, *rest: Any) -> Any:
        if not ticker:
            ticks["last"] = time.monotonic()
            ticker.append(asyncio.get_running_loop().create_task(tick()))
        conn = None
        try:
            conn = await engine.connect()
            await conn.begin()
            result = await op(conn)
            started = time.monotonic()
            try:
                await conn.commit()
            except BaseException:
                if not stood_still_since(started):
                    resend(engine, op, *rest)
                raise
            if time.monotonic() - started > 0.25 and not stood_still_since(started):
                resend(engine, op, *rest)
        except BaseException:
            if conn is not None:
                await db._discard(conn)
            raise
        await db._close(conn)
        return result

    async def stored(self: AuditStore, ids: list[str]) -> set[str]:
        """The ids already in the table, whoever wrote them: a queue entry redelivered to
        another instance (its first reader paused) is not written twice, so only the
        variant's own resends duplicate."""
        from sqlalchemy import text

        if not ids:
            return set()
        async with asyncio.timeout(self.op_timeout_s), self.engine.connect() as conn:
            sql = f"SELECT event_id::text FROM {self.table} WHERE event_id::text = ANY(:ids)"
            return {row[0] for row in await conn.execute(text(sql), {"ids": ids})}

    async def one(self: AuditStore, event: Any, path: str, **kw: Any) -> int:
        if str(event.event_id) in written or await stored(self, [str(event.event_id)]):
            return 0
        done = await insert_one(self, event, path, **kw)
        written.add(str(event.event_id))
        return done

    async def many(self: AuditStore, events: Any, path: str, **kw: Any) -> int:
        fresh = [e for e in events if str(e.event_id) not in written]
        known = await stored(self, [str(e.event_id) for e in fresh])
        fresh = [e for e in fresh if str(e.event_id) not in known]
        done = await insert_many(self, fresh, path, **kw)
        written.update(str(e.event_id) for e in fresh)
        return done

    async def replay(self: AuditStore, docs: Any, path: str = "file", **kw: Any) -> int:
        fresh = [d for d in docs if str(json.loads(d)["event_id"]) not in written]
        done = await copy_replay_json(self, fresh, path, **kw)
        written.update(str(json.loads(d)["event_id"]) for d in fresh)
        return done

    db._in_transaction = hasty  # type: ignore[assignment]
    AuditStore.insert_one = one  # type: ignore[method-assign]
    AuditStore.insert_many = many  # type: ignore[method-assign]
    AuditStore.copy_replay_json = replay  # type: ignore[method-assign]


@dataclass(frozen=True)
class PropertyMutant:
    """A variant no single catalogue fault shows: `stormproof property` must find it."""

    name: str
    breaks: str
    needs: str
    """What a schedule needs to show it (the shrunk schedule is checked against it)."""
    patch: Callable[[], None]
    env: dict[str, str] = field(default_factory=dict)
    stack: dict[str, Any] = field(default_factory=dict)


PROPERTY_MUTANTS: dict[str, PropertyMutant] = {
    m.name: m
    for m in (
        PropertyMutant(
            "loses-audit-on-second-outage",
            "from the second Redis outage on (a breaker trial failing again after having "
            "closed), the database path acknowledges audit events without writing them",
            "two Redis outages",
            _loses_audit_on_second_redis_outage,
        ),
        PropertyMutant(
            "resends-slow-commits",
            "no idempotency key, and a COMMIT that answered late or not at all is sent "
            "again: an event is written twice when a PostgreSQL reply is delayed or lost",
            "a PostgreSQL reply delayed or lost after the commit",
            _resends_slow_commits,
        ),
    )
}


# -- variants shown by a given schedule (tests/mutants/test_cache_second_outage.py) -------


def _forgets_l1_writes_after_reconnect() -> None:
    from reference.cache import HybridCache

    reconnects: dict[str, int] = {}  # per cache instance id
    flush_on_reconnect = HybridCache.flush_on_reconnect

    def counting(self: HybridCache, reason: str) -> None:
        if reason == "redis breaker closed after an outage":
            reconnects[self.instance_id] = reconnects.get(self.instance_id, 0) + 1
        flush_on_reconnect(self, reason)

    set_, fill = HybridCache.set, HybridCache._fill

    async def forgetful_set(
        self: HybridCache, key: str, value: Any, ttl_s: float | None = None
    ) -> bool:
        reached_l2 = await set_(self, key, value, ttl_s)
        if reconnects.get(self.instance_id) and reached_l2:  # L1 no longer keeps it
            with self._lock:
                self._touch(key)
                self._drop(key)
        return reached_l2

    def forgetful_fill(self: HybridCache, key: str, value: Any, ttl: float, stamp: int) -> bool:
        return False if reconnects.get(self.instance_id) else fill(self, key, value, ttl, stamp)

    HybridCache.flush_on_reconnect = counting  # type: ignore[method-assign,assignment]
    HybridCache.set = forgetful_set  # type: ignore[method-assign]
    HybridCache._fill = forgetful_fill  # type: ignore[method-assign,assignment]


SCHEDULE_MUTANTS: dict[str, PropertyMutant] = {
    m.name: m
    for m in (
        PropertyMutant(
            "forgets-l1-writes-after-reconnect",
            "after the first reconnect following a Redis outage, L1 no longer keeps what is "
            "written or read (L2 only): the next outage misses keys written since the heal",
            "two Redis outages",
            _forgets_l1_writes_after_reconnect,
        ),
    )
}
