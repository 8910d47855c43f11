"""The seed's four alert rules over one evaluation's `AlertSignals`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "RULES",
    "AlertEvent",
    "AlertRule",
    "AlertSignals",
    "AlertState",
    "AlertThresholds",
    "Reading",
    "Severity",
]

Severity = Literal["warning", "critical"]
AlertState = Literal["firing", "resolved"]


@dataclass(frozen=True, slots=True)
class AlertSignals:
    """What the rules look at, built once per evaluation ("recent" = the signal window)."""

    redis_failures_recent: int = 0
    redis_circuit: str = "CLOSED"
    cache_reads_recent: int = 0
    fallback_usage: float = 0.0
    file_backups_recent: int = 0
    journal_backlog: int = 0
    health_status: str = "HEALTHY"
    audit_queue_unsafe: bool = False
    journal_chain_breaks_recent: int = 0


@dataclass(frozen=True, slots=True)
class AlertThresholds:
    """Rule thresholds; `min_cache_reads` keeps "1 fallback of 1 read" from firing."""

    redis_failures: int = 5
    fallback_usage: float = 0.5
    min_cache_reads: int = 20


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One notification; `at` is ISO 8601 UTC (`...Z`) from the wall clock."""

    name: str
    severity: Severity
    state: AlertState
    message: str
    value: float | str
    threshold: float | str
    at: str
    instance_id: str

    def to_dict(self) -> dict[str, float | str]:
        """The event as the JSON object the webhook receives."""
        return {
            "name": self.name,
            "severity": self.severity,
            "state": self.state,
            "message": self.message,
            "value": self.value,
            "threshold": self.threshold,
            "at": self.at,
            "instance_id": self.instance_id,
        }


@dataclass(frozen=True, slots=True)
class Reading:
    """A rule's verdict on one `AlertSignals`."""

    active: bool
    value: float | str
    threshold: float | str
    message: str


@dataclass(frozen=True, slots=True)
class AlertRule:
    """A named condition over the signals. `hold`, when given, keeps an alert that is
    firing from resolving while it is true (an outage not over yet)."""

    name: str
    severity: Severity
    check: Callable[[AlertSignals, AlertThresholds], Reading]
    hold: Callable[[AlertSignals], bool] | None = None


def _redis_failures(s: AlertSignals, t: AlertThresholds) -> Reading:
    n, circuit = s.redis_failures_recent, s.redis_circuit.upper()
    return Reading(
        active=n >= t.redis_failures or circuit == "OPEN",
        value=n,
        threshold=t.redis_failures,
        message=f"{n} recent Redis failures (threshold {t.redis_failures}), circuit {circuit}",
    )


def _fallback_usage(s: AlertSignals, t: AlertThresholds) -> Reading:
    reads = s.cache_reads_recent
    return Reading(
        active=reads >= t.min_cache_reads and s.fallback_usage > t.fallback_usage,
        value=s.fallback_usage,
        threshold=t.fallback_usage,
        message=(
            f"cache fallback usage {s.fallback_usage:.1%} of {reads} recent reads "
            f"(threshold {t.fallback_usage:.1%}, minimum {t.min_cache_reads} reads)"
        ),
    )


def _file_backup(s: AlertSignals, t: AlertThresholds) -> Reading:
    written, backlog = s.file_backups_recent, s.journal_backlog
    return Reading(
        active=written > 0 or backlog > 0,
        value=max(written, backlog),
        threshold=0,
        message=f"{written} audit events recently written to the file journal, "
        f"{backlog} pending replay",
    )


def _unhealthy(s: AlertSignals, t: AlertThresholds) -> Reading:
    status = s.health_status.upper()
    return Reading(
        active=status == "UNHEALTHY",
        value=status,
        threshold="UNHEALTHY",
        message=f"overall health is {status}",
    )


def _queue_unsafe(s: AlertSignals, t: AlertThresholds) -> Reading:
    return Reading(
        active=s.audit_queue_unsafe,
        value=int(s.audit_queue_unsafe),
        threshold=1,
        message="the audit queue's Redis cannot keep acknowledged events "
        "(AOF, appendfsync, eviction policy or role; see /health audit_queue)",
    )


def _chain_broken(s: AlertSignals, t: AlertThresholds) -> Reading:
    n = s.journal_chain_breaks_recent
    return Reading(
        active=n > 0,
        value=n,
        threshold=0,
        message=f"{n} journal segments recently failed the HMAC chain (quarantined or missing)",
    )


def _breaker_not_closed(s: AlertSignals) -> bool:
    """HALF_OPEN is still the outage: trials under way, nothing proven yet."""
    return s.redis_circuit.upper() != "CLOSED"


RULES: tuple[AlertRule, ...] = (
    AlertRule("REDIS_MULTIPLE_FAILURES", "warning", _redis_failures, _breaker_not_closed),
    AlertRule("HIGH_CACHE_FALLBACK_USAGE", "warning", _fallback_usage),
    AlertRule("AUDITORIA_FILE_BACKUP_ACTIVE", "critical", _file_backup),
    AlertRule("SYSTEM_UNHEALTHY", "critical", _unhealthy),
    AlertRule("AUDIT_QUEUE_UNSAFE", "critical", _queue_unsafe),
    AlertRule("AUDIT_JOURNAL_CHAIN_BROKEN", "critical", _chain_broken),
)
"""The seed's rules, in the seed's order, then the audit's own."""
