"""Every component of the service, built from the settings, started and stopped together.

Start-up never waits for Redis or PostgreSQL: schema creation, warm-up, the queue worker,
the recovery job, the health poller and the alert evaluator all run as background tasks
that retry, so the service answers even when its dependencies are down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from reference.alerts import (
    AlertEvaluator,
    AlertSignals,
    AlertSink,
    CumulativeCounters,
    LogSink,
    SignalWindow,
    WebhookSink,
)
from reference.audit.consumers import consumer_name
from reference.audit.db import make_engine, run_bounded
from reference.audit.journal import Journal, JournalConfig
from reference.audit.journal_format import hmac_key_from_text
from reference.audit.queue import AuditQueue, QueueWorker
from reference.audit.queue_safety import QueueGuard
from reference.audit.recovery import RecoveryJob
from reference.audit.resilient import ResilientAudit
from reference.audit.store import AuditStore
from reference.breaker import CircuitBreaker, CircuitState
from reference.cache import HybridCache
from reference.clock import SYSTEM_CLOCK, Clock
from reference.config import Settings
from reference.health import HealthMonitor, overall_status, redis_ping
from reference.metrics import ResilienceMetrics
from reference.service.beneficios import BeneficiosRepo
from reference.service.configs import (
    alert_evaluator,
    audit_config,
    breaker_config,
    breakers,
    cache_config,
    database_config,
    recovery_config,
    redis_client,
    worker_config,
)
from reference.warmup import warm_up

_log = logging.getLogger("reference.service")
RETRY_S = 1.0
STOP_TIMEOUT_S = 10.0
PROBE_INTERVAL_MAX_S = 1.0
ALERT_WINDOW_MAX_S = 60.0
ALERT_WINDOW_EVALUATIONS = 12
CRITICAL_KEYS = ("system:config", "permissions:roles", "beneficios:tipos")
_CRITICAL_VALUES: dict[str, Any] = {
    "system:config": {"maintenance": False, "version": 1},
    "permissions:roles": ["admin", "operador", "auditor"],
    "beneficios:tipos": ["auxilio", "bolsa", "cesta"],
}


async def select_one(engine: AsyncEngine, timeout_s: float) -> None:
    """`SELECT 1` on a pooled connection, bounded (a timed-out connection is discarded)."""

    async def run(conn: Any) -> None:
        await conn.execute(text("SELECT 1"))

    await run_bounded(engine, run, timeout_s)


@dataclass
class Components:
    """Every component of the service, built by `build`, run by `start`, ended by `stop`."""

    settings: Settings
    clock: Clock
    metrics: ResilienceMetrics
    redis_breaker: CircuitBreaker
    db_breaker: CircuitBreaker
    engine: AsyncEngine
    cache: HybridCache
    store: AuditStore
    beneficios: BeneficiosRepo
    journal: Journal | None
    queue_redis: aioredis.Redis | None
    health_redis: aioredis.Redis | None
    worker_redis: aioredis.Redis | None
    worker: QueueWorker | None
    recovery: RecoveryJob
    audit: ResilientAudit
    health: HealthMonitor
    alerts: AlertEvaluator | None
    webhook: WebhookSink | None
    queue_guard: QueueGuard | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    schema_ready: asyncio.Event = field(default_factory=asyncio.Event)
    _schema_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    async def build(cls, settings: Settings, clock: Clock = SYSTEM_CLOCK) -> Components:
        """Build every component from `settings` (configs and clients from `configs.py`)."""
        metrics = ResilienceMetrics()
        redis_breaker, db_breaker = breakers(settings, clock)
        metrics.watch_breaker(redis_breaker)
        metrics.watch_breaker(db_breaker)
        engine = make_engine(database_config(settings))
        store = AuditStore(engine, op_timeout_s=settings.db_op_timeout_s)
        # the cache adds a random suffix to INSTANCE_ID: two processes started with the
        # same INSTANCE_ID must not ignore each other's invalidations
        cache_redis = health_redis = None
        if not settings.disable_redis:
            cache_redis = redis_client(settings, settings.redis_op_timeout_s)
            health_redis = redis_client(
                settings, max(settings.redis_op_timeout_s, 0.25), max_connections=2
            )
        cache = HybridCache(
            cache_config(settings),
            redis_breaker,
            redis=cache_redis,
            owns_redis=True,
            metrics=metrics,
            clock=clock,
        )
        journal: Journal | None = None
        if settings.audit_file_backup:
            key = settings.audit_hmac_key
            journal = Journal(
                JournalConfig(
                    directory=settings.audit_backup_path,
                    segment_max_bytes=settings.audit_journal_segment_bytes,
                    hmac_key=hmac_key_from_text(key.reveal()) if key else None,
                    max_pending_bytes=settings.audit_journal_max_pending_bytes,
                ),
                clock,
            )
            await journal.open()
        queue_redis = worker_redis = guard = None
        worker = queue = None
        if not settings.disable_redis:
            guard = QueueGuard(
                settings.audit_queue_accept_unsafe,
                on_change=lambda safety: metrics.set_audit_queue_unsafe(not safety.safe),
            )
            queue_redis = redis_client(settings, settings.audit_timeout_s, guard=guard)
            worker_redis = redis_client(
                settings, max(2.0, settings.redis_op_timeout_s), max_connections=4, guard=guard
            )
            queue = AuditQueue(
                queue_redis,
                settings.audit_queue_stream,
                min_replicas=settings.audit_queue_min_replicas,
                # half the attempt's budget: the XADD's own round trip fits in the rest
                wait_timeout_s=settings.audit_timeout_s / 2,
            )
            worker = QueueWorker(
                worker_redis,
                store,
                worker_config(
                    settings,
                    consumer=consumer_name(settings.instance_id),
                    predecessors=settings.instance_id,
                    block_s=0.5,
                    redis_timeout_s=max(2.0, settings.redis_op_timeout_s),
                ),
                clock,
            )
        journal_breaker = CircuitBreaker("journal", breaker_config(settings), clock)
        metrics.watch_breaker(journal_breaker)
        audit = ResilientAudit(
            audit_config(settings),
            queue=queue,
            redis_breaker=redis_breaker,
            store=store,
            db_breaker=db_breaker,
            journal=journal,
            metrics=metrics,
            queue_guard=guard,
            journal_breaker=journal_breaker,
        )
        recovery = RecoveryJob(
            recovery_config(settings),
            store,
            journal=journal,
            worker=worker,
            clock=clock,
            metrics=metrics,
        )
        beneficios = BeneficiosRepo(engine, db_breaker, settings.db_op_timeout_s)

        async def db_ping() -> None:
            await select_one(engine, settings.db_op_timeout_s)

        health = HealthMonitor(
            redis_ping=redis_ping(health_redis) if health_redis is not None else None,
            db_ping=db_ping,
            redis_breaker=redis_breaker,
            redis_timeout_s=max(settings.redis_op_timeout_s, 0.25),
            db_timeout_s=settings.db_op_timeout_s,
            other_breakers={"database": db_breaker},
            clock=clock,
        )
        webhook = None
        alerts = None
        if settings.alerts_enabled:
            sinks: list[AlertSink] = [LogSink(logging.getLogger("reference.alerts"))]
            if settings.alert_webhook_url:
                webhook = WebhookSink(settings.alert_webhook_url, timeout_s=2.0)
                sinks.append(webhook)
            alerts = alert_evaluator(settings, sinks, clock)
        return cls(
            settings=settings,
            clock=clock,
            metrics=metrics,
            redis_breaker=redis_breaker,
            db_breaker=db_breaker,
            engine=engine,
            cache=cache,
            store=store,
            beneficios=beneficios,
            journal=journal,
            queue_redis=queue_redis,
            health_redis=health_redis,
            worker_redis=worker_redis,
            worker=worker,
            recovery=recovery,
            audit=audit,
            health=health,
            alerts=alerts,
            webhook=webhook,
            queue_guard=guard,
        )

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start background work; returns at once (nothing here waits for a dependency)."""
        await self.cache.start()
        if self.webhook is not None:
            await self.webhook.start()
        self._spawn(self._prepare_schema(), "schema")
        self._spawn(self._warm_up(), "warm-up")
        self._spawn(self.health.run_forever(self.settings.health_check_interval_s), "health")
        self._spawn(self._probe_database_breaker(), "database-breaker-probe")
        if self.queue_redis is not None:
            self._spawn(self._check_queue_redis(), "queue-redis-check")
        if self.alerts is not None:
            window = SignalWindow(self.clock, alert_window_s(self.settings))
            self._spawn(
                self.alerts.run_forever(
                    lambda: self._signals(window), self.settings.alert_eval_interval_s
                ),
                "alerts",
            )

    async def ensure_schema(self, timeout_s: float | None = None) -> None:
        """Create the tables now unless done already (one creator at a time); raises when
        the database fails or `timeout_s` passes. Requests call it too (bounded), so the
        first one after start-up does not race the background creation into an
        "undefined table" error."""
        if self.schema_ready.is_set():
            return
        async with asyncio.timeout(timeout_s), self._schema_lock:
            if self.schema_ready.is_set():
                return
            await self.store.ensure_schema()
            await self.beneficios.ensure_schema()
            self.schema_ready.set()

    async def _prepare_schema(self) -> None:
        while True:
            try:
                await self.ensure_schema()
                break
            except Exception as exc:
                _log.warning("schema not ready (%s); retrying", type(exc).__name__)
                await self.clock.sleep(RETRY_S)
        if self.worker is not None:
            self._spawn(self.worker.run(), "queue-worker")
        self._spawn(self.recovery.run_forever(), "recovery")

    async def _probe_database_breaker(self) -> None:
        """Trial calls for the database breaker once it is HALF_OPEN.

        The Redis breaker is probed by the cache's invalidation subscriber; nothing does
        that for the database breaker, which only the audit's db path and `beneficios` call
        through. After an outage with no such traffic it would stay HALF_OPEN, and /health
        DEGRADED, forever. A `SELECT 1` per trial (as many as closing takes) fixes that.
        """
        interval = min(self.settings.health_check_interval_s, PROBE_INTERVAL_MAX_S)
        breaker = self.db_breaker

        async def trial() -> None:
            await select_one(self.engine, self.settings.db_op_timeout_s)

        while True:
            await self.clock.sleep(interval)
            for _ in range(breaker.config.half_open_max_calls):
                if breaker.state is not CircuitState.HALF_OPEN:
                    break
                try:
                    await breaker.call(trial)
                except Exception:  # a failed trial re-opened it; a rejection: trials busy
                    break

    async def _check_queue_redis(self) -> None:
        """Connect the queue's client until its Redis has been checked once (the check
        runs on every new connection: see audit/queue_safety.py)."""
        guard, client = self.queue_guard, self.queue_redis
        while guard is not None and client is not None and not guard.safety.checked:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(max(1.0, self.settings.audit_timeout_s)):
                    await client.ping()
            if not guard.safety.checked:
                await asyncio.sleep(RETRY_S)

    async def _warm_up(self) -> None:
        async def constant(key: str) -> Any:
            return _CRITICAL_VALUES[key]

        loaders = {key: (lambda key=key: constant(key)) for key in CRITICAL_KEYS}
        await warm_up(self.cache, loaders, clock=self.clock)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def stop(self) -> None:
        """Stop background work, drain what can be drained, flush and close everything."""
        if self.worker is not None:
            self.worker.stop()
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.gather(*self._tasks, return_exceptions=True), STOP_TIMEOUT_S
            )
        if self.webhook is not None:
            await self.webhook.aclose(2.0)
        await self.cache.aclose()
        if self.journal is not None:
            await self.journal.close()
        for client in (self.queue_redis, self.worker_redis, self.health_redis):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
        await self.engine.dispose()

    # -- what the routes ask ----------------------------------------------------------------

    async def health_report(self) -> dict[str, Any]:
        """The last poll's probes, with the breakers' states as they are now."""
        report = self.health.latest or await self.health.check()
        circuit = self.redis_breaker.state
        body = report.to_dict()
        body["circuit"] = circuit.value
        body["circuits"] = {"redis": circuit.value, "database": self.db_breaker.state.value}
        if self.journal is not None:  # a disk refusing writes says so (ENOSPC, EIO, EROFS)
            error = self.journal.last_error
            body["journal"] = {"ok": error is None, "error": error}
        body["status"] = overall_status(
            redis_ok=report.redis.ok,
            database_ok=report.database.ok,
            breakers=(circuit, self.db_breaker.state),
        ).value
        if self.queue_guard is not None:
            body["audit_queue"] = self.queue_guard.to_dict()
        return body

    async def resilience(self) -> dict[str, Any]:
        """The `/resilience` body: the metrics snapshot with live states and backlog."""
        body: dict[str, Any] = self.metrics.snapshot().to_dict()
        body["redis"]["circuitState"] = self.redis_breaker.state.value
        body["auditoria"]["journalBacklog"] = await self._journal_backlog()
        guard = self.queue_guard
        body["auditoria"]["queueUnsafe"] = guard is not None and guard.known_unsafe
        body["auditoria"]["queueInUse"] = guard is not None and guard.usable
        report = await self.health_report()
        body["overall_health"] = report["status"]
        body["timestamp"] = datetime.fromtimestamp(self.clock.now(), UTC).isoformat(
            timespec="milliseconds"
        )
        return body

    async def refresh_gauges(self) -> None:
        """Update the gauges read at scrape time (the journal backlog)."""
        self.metrics.set_journal_backlog(await self._journal_backlog())

    async def run_recovery(self) -> dict[str, int]:
        """Replay the journal now; the tables first (the background creation may not have
        caught up with a database that has just come back)."""
        await self.ensure_schema(self.settings.db_op_timeout_s)
        result = await self.recovery.run_once()
        return {"replayed": result.replayed, "remaining": result.remaining}

    async def backlog(self) -> dict[str, int | str | None]:
        """Journal records and queue entries not yet in the database. The journal is on
        this instance's disk: it is counted even when the queue's Redis cannot be asked
        (then `queue_pending` is None and `queue_error` says why), so an operator sees the
        journal backlog during a Redis outage."""
        journal = await self._journal_backlog()
        try:
            queue = 0 if self.worker is None else await self.worker.backlog()
        except Exception as exc:
            return {
                "journal_pending": journal,
                "queue_pending": None,
                "queue_error": f"unknown: {type(exc).__name__}",
            }
        return {"journal_pending": journal, "queue_pending": queue}

    async def _journal_backlog(self) -> int:
        return await self.recovery.backlog()

    async def _signals(self, window: SignalWindow) -> AlertSignals:
        report = await self.health_report()
        return window.observe(
            CumulativeCounters.from_totals(self.metrics.totals()),
            redis_circuit=self.redis_breaker.state.value,
            journal_backlog=await self._journal_backlog(),
            health_status=str(report["status"]),
            audit_queue_unsafe=self.queue_guard is not None and self.queue_guard.known_unsafe,
        )


def alert_window_s(settings: Settings) -> float:
    """How far back the alert rules' "recent" counts look: twelve evaluations, at most a
    minute (the default 5 s evaluation interval gives the minute). Resolution follows an
    outage's end by about this much, so a faster evaluation also resolves faster."""
    return min(ALERT_WINDOW_MAX_S, ALERT_WINDOW_EVALUATIONS * settings.alert_eval_interval_s)
