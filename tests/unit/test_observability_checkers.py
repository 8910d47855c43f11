"""The `alerts` and `metrics` checkers on synthetic histories: each flaw flagged for its
reason, the consistent history passing."""

from __future__ import annotations

from typing import Any

from scenarios.checkers import Truth
from scenarios.checkers.alerts import AlertsChecker
from scenarios.checkers.metrics import REDIS_FAILURES, MetricsChecker
from scenarios.history import FaultWindow, History
from scenarios.observe import ALERT_F, OBSERVE_F, parse_metrics
from tests.unit.test_checkers import Synth

REDIS = FaultWindow("redis-down", "redis", 4.0, 8.0)
POSTGRES = FaultWindow("postgres-down", "postgres", 4.0, 8.0)
ALERTS = AlertsChecker(fire=("REDIS_MULTIPLE_FAILURES",), within_s=3, resolve_within_s=5)


def alert(s: Synth, t: float, state: str, name: str = "REDIS_MULTIPLE_FAILURES") -> None:
    s.op(ALERT_F, t, t, key=name, response={"name": name, "state": state}, instance="i1")


def sample(
    s: Synth,
    t: float,
    failures: float,
    circuit: str = "CLOSED",
    health_circuit: str | None = None,
    file_backups: int = 0,
) -> None:
    response: dict[str, Any] = {
        "resilience": {
            "redis": {"failures": failures, "circuitState": circuit},
            "auditoria": {"fileBackups": file_backups},
        },
        "health": {"status": "HEALTHY", "circuit": health_circuit or circuit},
        "metrics": {REDIS_FAILURES: failures},
    }
    s.op(OBSERVE_F, t, t + 0.01, response=response, instance="i1", process=9100)


def steady(*windows: FaultWindow, rises: bool = True) -> Synth:
    """Samples every 0.5 s for 12 s; the Redis failure counter climbs inside Redis
    windows (when `rises`) and stays put outside them."""
    s = Synth()
    failures = 0
    for n in range(24):
        t = n * 0.5
        inside = any(w.start <= t < (w.end or 99) for w in windows if w.target == "redis")
        failures += 2 if inside and rises else 0
        sample(s, t, failures, "OPEN" if inside and t > 5 else "CLOSED")
    return s


def test_alerts_fired_and_resolved_in_time_pass() -> None:
    """Fires 1 s into the fault, resolves 3 s after healing, quiet baseline: a pass."""
    s = Synth()
    alert(s, 5.0, "firing")
    alert(s, 11.0, "resolved")
    result = ALERTS.check(s.history(REDIS), Truth())
    assert result.passed, result.summary


def test_alert_that_never_resolves_is_flagged() -> None:
    """Fired, then nothing: flagged as never resolved (the mutant's signature)."""
    s = Synth()
    alert(s, 5.0, "firing")
    result = ALERTS.check(s.history(REDIS), Truth())
    assert not result.passed and "never resolved" in result.summary


def test_alert_late_missing_or_during_baseline_is_flagged() -> None:
    """Too late to fire, too late to resolve, never fired, or fired in the baseline."""
    s = Synth()
    alert(s, 7.5, "firing")
    alert(s, 14.0, "resolved")
    result = ALERTS.check(s.history(REDIS), Truth())
    assert "fired 3.5s after the fault" in result.summary
    assert "resolved 6.0s after healing" in result.summary
    quiet = ALERTS.check(Synth().history(REDIS), Truth())
    assert "never fired" in quiet.summary
    s = Synth()
    alert(s, 1.0, "firing", "HIGH_CACHE_FALLBACK_USAGE")
    alert(s, 5.0, "firing")
    alert(s, 9.0, "resolved")
    baseline = ALERTS.check(s.history(REDIS), Truth())
    assert not baseline.passed and "fired during the baseline" in baseline.summary


def test_alerts_without_a_fault_is_insufficient_evidence() -> None:
    """No fault window: nothing to judge against, a FAIL."""
    result = ALERTS.check(Synth().history(), Truth())
    assert not result.passed and "insufficient evidence" in result.summary


def test_consistent_dashboards_pass() -> None:
    """Counter rises in the Redis fault, breaker agrees, file acks counted: a pass."""
    result = MetricsChecker().check(steady(REDIS).history(REDIS), Truth())
    assert result.passed, result.summary


def test_metrics_that_never_move_are_flagged() -> None:
    """A Redis fault with the failure counter flat: flagged (the mutant's signature)."""
    result = MetricsChecker().check(steady(REDIS, rises=False).history(REDIS), Truth())
    assert not result.passed and "did not rise during redis-down" in result.summary


def test_redis_counter_moving_during_a_postgres_fault_is_flagged() -> None:
    """Redis failures counted while only PostgreSQL was down: flagged."""
    s = Synth()
    for n in range(24):
        sample(s, n * 0.5, n)
    result = MetricsChecker().check(s.history(POSTGRES), Truth())
    assert not result.passed and "moved during postgres-down" in result.summary
    quiet = steady()
    assert MetricsChecker().check(quiet.history(POSTGRES), Truth()).passed


def test_file_acks_above_file_backups_are_flagged() -> None:
    """Three file-path acks before a sample that counts one: flagged."""
    s = steady()
    for t in (1.0, 1.1, 1.2):
        s.op("audit", t, t + 0.01, response={"path": "file"}, instance="i1", process=3)
    sample(s, 2.0, 0, file_backups=1)
    sample(s, 12.5, 0, file_backups=3)
    history = History(s.events, ())
    result = MetricsChecker(redis_failures=False).check(history, Truth())
    assert not result.passed and "3 file-path acknowledgements" in result.summary


def test_breaker_disagreement_twice_in_a_row_is_flagged_once_is_not() -> None:
    """One disagreeing sample is a transition; two in a row are a fault."""
    s = Synth()
    sample(s, 1.0, 0)
    sample(s, 1.5, 0, "OPEN", "CLOSED")
    sample(s, 2.0, 0)
    checker = MetricsChecker(redis_failures=False)
    assert checker.check(History(s.events, ()), Truth()).passed
    sample(s, 2.5, 0, "OPEN", "CLOSED")
    sample(s, 3.0, 0, "OPEN", "CLOSED")
    result = checker.check(History(s.events, ()), Truth())
    assert not result.passed and "two samples in a row" in result.summary


def test_metrics_without_samples_is_insufficient_evidence() -> None:
    """No dashboard sample: a FAIL, never a PASS."""
    result = MetricsChecker().check(Synth().history(REDIS), Truth())
    assert not result.passed and "insufficient evidence" in result.summary


def test_parse_metrics_keeps_stormproof_samples_with_labels() -> None:
    """Only stormproof_* samples, labels sorted into the key."""
    text = (
        "# TYPE stormproof_redis_failures counter\nstormproof_redis_failures_total 3.0\n"
        '# TYPE stormproof_audit_events counter\nstormproof_audit_events_total{path="file"} 2.0\n'
        "# TYPE python_info gauge\npython_info 1.0\n"
    )
    parsed = parse_metrics(text)
    assert parsed[REDIS_FAILURES] == 3.0
    assert parsed['stormproof_audit_events_total{path="file"}'] == 2.0
    assert not any(k.startswith("python") for k in parsed)
