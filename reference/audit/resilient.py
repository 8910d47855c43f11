"""`ResilientAudit.record`: queue, then database, then journal; success only when durable.

Each path is one attempt bounded by `AuditConfig.timeout_s`, with a timeout that really
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
from dataclasses import dataclass, field

from reference.audit.event import AuditEvent
from reference.audit.group_commit import GroupCommitConfig, GroupCommitter
from reference.audit.journal import Journal
from reference.audit.queue import AuditQueue
from reference.audit.queue_safety import QueueGuard
from reference.audit.store import AuditStore
from reference.breaker import CircuitBreaker, CircuitOpenError
from reference.errors import describe
from reference.metrics import AuditPath, ResilienceMetrics

__all__ = ["AuditConfig", "AuditUnavailable", "QueueUnsafe", "ResilientAudit"]

_log = logging.getLogger(__name__)
_Attempt = Callable[[AuditEvent], Awaitable[object]]


class QueueUnsafe(Exception):
    """The queue's Redis cannot keep acknowledged events (see audit/queue_safety.py)."""


class AuditUnavailable(Exception):
    """No path durably accepted the event; `reasons` says why, per path tried."""

    def __init__(self, event_id: uuid.UUID, reasons: Mapping[AuditPath, str]) -> None:
        detail = "; ".join(f"{path}: {why}" for path, why in reasons.items()) or "no path enabled"
        super().__init__(f"audit event {event_id} not recorded ({detail})")
        self.event_id = event_id
        self.reasons: dict[AuditPath, str] = dict(reasons)


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """The per-attempt timeout and which paths are on (DISABLE_REDIS turns the queue off,
    AUDIT_SYNC_FALLBACK the database, AUDIT_FILE_BACKUP the journal)."""

    timeout_s: float = 0.5
    queue: bool = True
    db: bool = True
    file: bool = True
    db_batching: GroupCommitConfig = field(default_factory=GroupCommitConfig)
    """How the database path groups concurrent events into one INSERT and commit."""


class ResilientAudit:
    """Records audit events on the first path that takes them durably.

    A path is enabled when its component is given and `config` turns it on: the queue
    (behind `redis_breaker`), the store (behind `db_breaker`) and the journal (it must be
    open to accept anything).
    """

    def __init__(
        self,
        config: AuditConfig,
        *,
        redis_breaker: CircuitBreaker,
        db_breaker: CircuitBreaker,
        queue: AuditQueue | None = None,
        store: AuditStore | None = None,
        journal: Journal | None = None,
        metrics: ResilienceMetrics | None = None,
        queue_guard: QueueGuard | None = None,
        journal_breaker: CircuitBreaker | None = None,
        db_committer: GroupCommitter | None = None,
    ) -> None:
        self._timeout_s = config.timeout_s
        self.redis_breaker = redis_breaker
        self.db_breaker = db_breaker
        self.journal_breaker = journal_breaker
        self.queue_guard = queue_guard
        self.db_committer = db_committer
        """Group-commits the db path's inserts (built from `store` and `config.db_batching`
        when not given)."""
        if db_committer is None and store is not None:
            self.db_committer = GroupCommitter(store, "db", self._timeout_s, config.db_batching)
        self._metrics = metrics
        attempts: list[tuple[AuditPath, _Attempt]] = []
        if queue is not None and config.queue:
            attempts.append(("queue", self._via_queue(queue)))
        if self.db_committer is not None and config.db:
            attempts.append(("db", self._via_db(self.db_committer)))
        if journal is not None and config.file:
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
                    if path == "queue" and not isinstance(exc, CircuitOpenError | QueueUnsafe):
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
            guard = self.queue_guard
            if guard is not None and not guard.usable:
                raise QueueUnsafe("; ".join(guard.safety.problems) or "unsafe")
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
        """Bounded; behind `journal_breaker` when given, so a stalled disk costs one fast
        rejection per event instead of one full timeout each."""

        async def append(event: AuditEvent) -> None:
            async with asyncio.timeout(self._timeout_s):
                await journal.append(event.to_json_bytes())

        async def attempt(event: AuditEvent) -> None:
            if self.journal_breaker is None:
                await append(event)
            else:
                await self.journal_breaker.call(lambda: append(event))

        return attempt


def _reason(exc: BaseException) -> str:
    if isinstance(exc, QueueUnsafe):
        return f"queue unsafe ({exc})"
    if isinstance(exc, CircuitOpenError):
        return f"circuit {exc.name} {exc.state.value}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return describe(exc, limit=160)
