"""Resilience metrics: Prometheus counters and gauges on an injectable registry.

Each `record_*` method moves exactly one metric; labelled children are bound at
construction so the hot path is one `inc()`. `snapshot()` gives the plain numbers behind
the seed's `/resilience` JSON.

Cache reads: every read records one outcome (`record_cache_hit("l1"|"l2")`,
`record_cache_miss()` or `record_stale_served()`); a miss whose value came from the
loader because L2 was unavailable additionally records `record_loader_fallback()`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics import MetricWrapperBase

from reference.breaker import CircuitBreaker, CircuitState
from reference.clock import SYSTEM_CLOCK, Clock

__all__ = [
    "BREAKER_STATE_VALUES",
    "HEALTH_STATUS_VALUES",
    "AuditPath",
    "CacheTier",
    "CounterTotals",
    "L2ErrorKind",
    "ResilienceMetrics",
    "ResilienceSnapshot",
]

K = TypeVar("K", bound=str)
CacheTier = Literal["l1", "l2"]
L2ErrorKind = Literal["error", "timeout", "rejected"]
AuditPath = Literal["queue", "db", "file"]

BREAKER_STATE_VALUES: dict[CircuitState, int] = {
    CircuitState.CLOSED: 0,
    CircuitState.HALF_OPEN: 1,
    CircuitState.OPEN: 2,
}
HEALTH_STATUS_VALUES: dict[str, int] = {"HEALTHY": 0, "DEGRADED": 1, "UNHEALTHY": 2}
_TIERS: tuple[CacheTier, ...] = ("l1", "l2")
_L2_KINDS: tuple[L2ErrorKind, ...] = ("error", "timeout", "rejected")
_PATHS: tuple[AuditPath, ...] = ("queue", "db", "file")


@dataclass(frozen=True, slots=True)
class CounterTotals:
    """Cumulative counter totals since start (what the alert rules are computed from)."""

    redis_failures: int = 0
    cache_hits_l1: int = 0
    cache_hits_l2: int = 0
    cache_misses: int = 0
    cache_stale_served: int = 0
    cache_loader_fallbacks: int = 0
    audit_file_events: int = 0
    journal_chain_breaks: int = 0


@dataclass(frozen=True, slots=True)
class ResilienceSnapshot:
    """Plain numbers for `/resilience` (rates are 0.0 before the first read)."""

    redis_failures: int
    last_failure: str | None
    hit_rate_l1: float
    hit_rate_l2: float
    fallback_usage: float
    queue_failures: int
    sync_fallbacks: int
    file_backups: int

    def to_dict(self) -> dict[str, dict[str, int | float | str | None]]:
        """The seed's shape (the caller adds circuitState and overall_health)."""
        return {
            "redis": {"failures": self.redis_failures, "lastFailure": self.last_failure},
            "cache": {
                "hitRateL1": self.hit_rate_l1,
                "hitRateL2": self.hit_rate_l2,
                "fallbackUsage": self.fallback_usage,
            },
            "auditoria": {
                "queueFailures": self.queue_failures,
                "syncFallbacks": self.sync_fallbacks,
                "fileBackups": self.file_backups,
            },
        }


class ResilienceMetrics:
    """The reference's metrics, registered on `registry` (a fresh one by default)."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        breakers: Iterable[str] = ("redis", "database"),
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._clock = clock
        r = self.registry

        hits = Counter("stormproof_cache_hits", "Cache hits per tier", ["tier"], registry=r)
        self._hits = {t: hits.labels(tier=t) for t in _TIERS}
        self._misses = Counter("stormproof_cache_misses", "Cache misses", registry=r)
        self._stale = Counter(
            "stormproof_cache_stale_served", "Reads served a stale L1 entry", registry=r
        )
        self._loader_fallbacks = Counter(
            "stormproof_cache_loader_fallbacks",
            "Reads served by the loader because L2 was unavailable",
            registry=r,
        )
        l2_errors = Counter("stormproof_cache_l2_errors", "L2 (Redis) errors", ["kind"], registry=r)
        self._l2_errors = {k: l2_errors.labels(kind=k) for k in _L2_KINDS}

        self._breaker_state = Gauge(
            "stormproof_breaker_state",
            "Circuit breaker state (0 closed, 1 half-open, 2 open)",
            ["breaker"],
            registry=r,
        )
        self._breaker_transitions = Counter(
            "stormproof_breaker_transitions",
            "Circuit breaker transitions",
            ["breaker", "from_state", "to_state"],
            registry=r,
        )
        for name in breakers:
            self._breaker_state.labels(breaker=name).set(0)

        events = Counter(
            "stormproof_audit_events", "Audit events accepted per path", ["path"], registry=r
        )
        self._audit_events = {p: events.labels(path=p) for p in _PATHS}
        attempt_failures = Counter(
            "stormproof_audit_attempt_failures",
            "Audit attempts that failed on a path (the next path was tried)",
            ["path"],
            registry=r,
        )
        self._audit_attempt_failures = {p: attempt_failures.labels(path=p) for p in _PATHS}
        self._audit_unavailable = Counter(
            "stormproof_audit_failures",
            "Audit events no path accepted (the caller got an error)",
            registry=r,
        )
        self._journal_backlog = Gauge(
            "stormproof_journal_backlog", "Journal records not yet replayed", registry=r
        )
        self._journal_corrupt = Counter(
            "stormproof_journal_corrupt_records", "Journal records quarantined", registry=r
        )
        self._recovery_replayed = Counter(
            "stormproof_recovery_replayed", "Journal records replayed into the database", registry=r
        )
        self._redis_failures = Counter(
            "stormproof_redis_failures", "Redis operation failures", registry=r
        )
        self._queue_unsafe = Gauge(
            "stormproof_audit_queue_unsafe",
            "1 when the audit queue's Redis cannot keep acknowledged events (AOF, "
            "appendfsync, eviction policy or role), 0 when it can",
            registry=r,
        )
        self._chain_breaks = Counter(
            "stormproof_journal_chain_breaks",
            "Journal segments that failed the HMAC chain (quarantined, or missing)",
            registry=r,
        )
        self._outage_keys_dropped = Counter(
            "stormproof_cache_outage_keys_dropped",
            "Keys written during a Redis outage that the bounded resync set could not hold "
            "(the cache namespace is flushed instead)",
            registry=r,
        )
        self._redis_last_failure = Gauge(
            "stormproof_redis_last_failure_timestamp_seconds",
            "Wall-clock time of the last Redis failure (0 = never)",
            registry=r,
        )
        # operators' gauges (deploy/prometheus/rules.yml), refreshed when /metrics is read
        self._health_status = Gauge(
            "stormproof_health_status",
            "Overall health (0 HEALTHY, 1 DEGRADED, 2 UNHEALTHY)",
            registry=r,
        )
        self._dependency_up = Gauge(
            "stormproof_dependency_up",
            "Whether the last health probe of a dependency answered (1) or not (0)",
            ["dependency"],
            registry=r,
        )
        self._dead_letters = Gauge(
            "stormproof_audit_dead_letters",
            "Audit stream entries given up on (rows in the dead-letter table), as last read",
            registry=r,
        )
        self._queue_backlog = Gauge(
            "stormproof_audit_queue_backlog",
            "Audit stream entries not yet committed to the database, as last read",
            registry=r,
        )

    # -- cache --------------------------------------------------------------------------

    def record_cache_hit(self, tier: CacheTier) -> None:
        """Count a cache read served by `tier`."""
        self._hits[tier].inc()

    def record_cache_miss(self) -> None:
        """Count a cache read that found nothing."""
        self._misses.inc()

    def record_stale_served(self) -> None:
        """Count a cache read served a stale copy."""
        self._stale.inc()

    def record_loader_fallback(self) -> None:
        """Count a value loaded from the source because L2 was unavailable."""
        self._loader_fallbacks.inc()

    def record_l2_error(self, kind: L2ErrorKind) -> None:
        """Count an L2 failure of `kind` (error, timeout, rejected)."""
        self._l2_errors[kind].inc()

    # -- breakers -----------------------------------------------------------------------

    def breaker_listener(self, name: str, old: CircuitState, new: CircuitState) -> None:
        """A `CircuitBreaker` listener: updates the state gauge and counts the transition."""
        self._breaker_state.labels(breaker=name).set(BREAKER_STATE_VALUES[new])
        self._breaker_transitions.labels(
            breaker=name, from_state=old.value, to_state=new.value
        ).inc()

    def watch_breaker(self, breaker: CircuitBreaker) -> None:
        """Publish `breaker`'s current state and follow its transitions."""
        breaker.add_listener(self.breaker_listener)
        self._breaker_state.labels(breaker=breaker.name).set(BREAKER_STATE_VALUES[breaker.state])

    # -- audit --------------------------------------------------------------------------

    def record_audit_event(self, path: AuditPath) -> None:
        """Count an audit event accepted on `path`."""
        self._audit_events[path].inc()

    def record_audit_attempt_failure(self, path: AuditPath) -> None:
        """Count a failed attempt on `path`."""
        self._audit_attempt_failures[path].inc()

    def record_audit_unavailable(self) -> None:
        """Count an event no path accepted."""
        self._audit_unavailable.inc()

    def set_journal_backlog(self, records: int) -> None:
        """Set the number of journal records not yet replayed."""
        self._journal_backlog.set(records)

    def record_journal_corrupt(self, records: int = 1) -> None:
        """Count quarantined journal records."""
        self._journal_corrupt.inc(records)

    def record_recovery_replayed(self, records: int) -> None:
        """Count journal records replayed into the database."""
        self._recovery_replayed.inc(records)

    def set_audit_queue_unsafe(self, unsafe: bool) -> None:
        self._queue_unsafe.set(1 if unsafe else 0)

    def record_journal_chain_break(self, segments: int = 1) -> None:
        self._chain_breaks.inc(segments)

    def record_outage_keys_dropped(self, keys: int = 1) -> None:
        self._outage_keys_dropped.inc(keys)

    # -- redis --------------------------------------------------------------------------

    def record_redis_failure(self) -> None:
        """Count a Redis failure and stamp its wall-clock time."""
        self._redis_failures.inc()
        self._redis_last_failure.set(self._clock.now())

    # -- operators' gauges ----------------------------------------------------------------

    def set_health(self, status: str, *, redis_ok: bool, database_ok: bool) -> None:
        """Publish the overall status ("HEALTHY" | "DEGRADED" | "UNHEALTHY") and probes."""
        self._health_status.set(HEALTH_STATUS_VALUES[status])
        self._dependency_up.labels(dependency="redis").set(int(redis_ok))
        self._dependency_up.labels(dependency="database").set(int(database_ok))

    def set_dead_letters(self, entries: int) -> None:
        self._dead_letters.set(entries)

    def set_queue_backlog(self, entries: int) -> None:
        self._queue_backlog.set(entries)

    # -- snapshot -----------------------------------------------------------------------

    def totals(self) -> CounterTotals:
        """The cumulative counters, typed (no metric-name strings for the reader)."""
        return CounterTotals(
            redis_failures=int(_value(self._redis_failures)),
            cache_hits_l1=int(_value(self._hits["l1"])),
            cache_hits_l2=int(_value(self._hits["l2"])),
            cache_misses=int(_value(self._misses)),
            cache_stale_served=int(_value(self._stale)),
            cache_loader_fallbacks=int(_value(self._loader_fallbacks)),
            audit_file_events=int(_value(self._audit_events["file"])),
            journal_chain_breaks=int(_value(self._chain_breaks)),
        )

    def snapshot(self) -> ResilienceSnapshot:
        """The plain numbers behind `/resilience`."""
        hits = _values(self._hits)
        l1, l2 = hits["l1"], hits["l2"]
        misses, stale = _value(self._misses), _value(self._stale)
        reads = l1 + l2 + misses + stale
        events = _values(self._audit_events)
        last = _value(self._redis_last_failure)
        return ResilienceSnapshot(
            redis_failures=int(_value(self._redis_failures)),
            last_failure=_iso(last) if last > 0 else None,
            hit_rate_l1=_ratio(l1, reads),
            hit_rate_l2=_ratio(l2, reads - l1),
            fallback_usage=_ratio(stale + _value(self._loader_fallbacks), reads),
            queue_failures=int(_value(self._audit_attempt_failures["queue"])),
            sync_fallbacks=int(events["db"]),
            file_backups=int(events["file"]),
        )


def _value(metric: MetricWrapperBase) -> float:
    """The value of an unlabelled counter or gauge (public `collect()` API)."""
    for family in metric.collect():
        for sample in family.samples:
            if sample.name in (family.name, f"{family.name}_total"):
                return sample.value
    return 0.0


def _values(children: Mapping[K, Counter]) -> dict[K, float]:
    return {key: _value(child) for key, child in children.items()}


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole > 0 else 0.0


def _iso(timestamp: float) -> str:
    """JavaScript's `Date.toISOString()` format, as the seed reports it."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
