"""`ResilientAudit.record`: queue, then database, then journal; success only when durable.

Each path is one attempt bounded by `settings.audit_timeout_s`, with a timeout that really
cancels it (a cancelled XADD drops its Redis connection; a cancelled INSERT invalidates its
database connection). The queue sits behind the shared Redis breaker and the database
behind the audit's own breaker, so an outage costs one fast rejection per event, not one
timeout. The first path that durably took the event is returned; if none did,
`AuditUnavailable` is raised and the caller must not report success.

An attempt that timed out may still have been applied (an XADD or a commit whose answer
was lost); falling through to the next path then delivers the event twice, which the
primary key on `event_id` absorbs. A journal append that raised or timed out is never
acknowledged (it may still reach the disk and be replayed: at-least-once, never lost).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping

from reference.audit.event import AuditEvent
from reference.audit.group_commit import GroupCommitConfig, GroupCommitter
from reference.audit.journal import Journal
from reference.audit.queue import AuditQueue
from reference.audit.store import AuditStore
from reference.breaker import BreakerConfig, CircuitBreaker, CircuitOpenError
from reference.clock import SYSTEM_CLOCK, Clock
from reference.config import Settings
from reference.metrics import AuditPath, ResilienceMetrics

__all__ = ["AuditUnavailable", "ResilientAudit", "breaker_config"]

_log = logging.getLogger(__name__)
DB_BREAKER_NAME = "database"
_Attempt = Callable[[AuditEvent], Awaitable[object]]


class AuditUnavailable(Exception):
    """No path durably accepted the event; `reasons` says why, per path tried."""

    def __init__(self, event_id: uuid.UUID, reasons: Mapping[AuditPath, str]) -> None:
        detail = "; ".join(f"{path}: {why}" for path, why in reasons.items()) or "no path enabled"
        super().__init__(f"audit event {event_id} not recorded ({detail})")
        self.event_id = event_id
        self.reasons: dict[AuditPath, str] = dict(reasons)


def breaker_config(settings: Settings) -> BreakerConfig:
    """The breaker settings shared by the Redis and database breakers."""
    return BreakerConfig(
        failure_threshold=settings.breaker_failure_threshold,
        reset_timeout_s=settings.breaker_reset_timeout_s,
        half_open_max_calls=settings.breaker_half_open_max_calls,
    )


class ResilientAudit:
    """Records audit events on the first path that takes them durably.

    A path is enabled when its component is given: the queue (unless
    `settings.disable_redis`), the store (if `settings.audit_sync_fallback`) and the
    journal (if `settings.audit_file_backup`; it must be open to accept anything).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        queue: AuditQueue | None = None,
        redis_breaker: CircuitBreaker | None = None,
        store: AuditStore | None = None,
        db_breaker: CircuitBreaker | None = None,
        journal: Journal | None = None,
        metrics: ResilienceMetrics | None = None,
        clock: Clock = SYSTEM_CLOCK,
        db_batching: GroupCommitConfig = GroupCommitConfig(),
        db_committer: GroupCommitter | None = None,
    ) -> None:
        self._timeout_s = settings.audit_timeout_s
        self.db_committer = db_committer
        """Group-commits the db path's inserts (built from `store` and `db_batching` when
        not given)."""
        if db_committer is None and store is not None:
            self.db_committer = GroupCommitter(store, "db", self._timeout_s, db_batching)
        config = breaker_config(settings)
        self.redis_breaker = redis_breaker or CircuitBreaker("audit-queue", config, clock)
        self.db_breaker = db_breaker or CircuitBreaker(DB_BREAKER_NAME, config, clock)
        self._metrics = metrics
        attempts: list[tuple[AuditPath, _Attempt]] = []
        if queue is not None and not settings.disable_redis:
            attempts.append(("queue", self._via_queue(queue)))
        if self.db_committer is not None and settings.audit_sync_fallback:
            attempts.append(("db", self._via_db(self.db_committer)))
        if journal is not None and settings.audit_file_backup:
            attempts.append(("file", self._via_journal(journal)))
        self._attempts = tuple(attempts)

    @property
    def paths(self) -> tuple[AuditPath, ...]:
        """The enabled paths, in the order they are tried."""
        return tuple(path for path, _ in self._attempts)

    async def record(self, event: AuditEvent) -> AuditPath:
        """Durably record `event`; returns the path that took it or raises AuditUnavailable."""
        reasons: dict[AuditPath, str] = {}
        metrics = self._metrics
        for path, attempt in self._attempts:
            try:
                await attempt(event)
            except Exception as exc:
                reasons[path] = _reason(exc)
                if metrics is not None:
                    metrics.record_audit_attempt_failure(path)
                    if path == "queue" and not isinstance(exc, CircuitOpenError):
                        metrics.record_redis_failure()
                continue
            if metrics is not None:
                metrics.record_audit_event(path)
            return path
        if metrics is not None:
            metrics.record_audit_unavailable()
        error = AuditUnavailable(event.event_id, reasons)
        _log.warning("%s", error)
        raise error

    def _via_queue(self, queue: AuditQueue) -> _Attempt:
        async def attempt(event: AuditEvent) -> None:
            await self.redis_breaker.call(lambda: queue.publish(event), timeout_s=self._timeout_s)

        return attempt

    def _via_db(self, committer: GroupCommitter) -> _Attempt:
        # concurrent events share one INSERT and one commit; each caller returns only after
        # the commit that holds its event. run_bounded (in the store) times out, cancels and
        # invalidates the connection; the breaker bounds each caller's own wait.
        async def attempt(event: AuditEvent) -> None:
            await self.db_breaker.call(lambda: committer.insert(event), timeout_s=self._timeout_s)

        return attempt

    def _via_journal(self, journal: Journal) -> _Attempt:
        async def attempt(event: AuditEvent) -> None:
            async with asyncio.timeout(self._timeout_s):
                await journal.append(event.to_json_bytes())

        return attempt


def _reason(exc: BaseException) -> str:
    if isinstance(exc, CircuitOpenError):
        return f"circuit {exc.name} {exc.state.value}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = " ".join(str(exc).split())[:160]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
