"""Evidence minimums and the INVALID verdict: a checker that saw too little fails with
"insufficient evidence: ...", and an unsteady baseline makes the run INVALID."""

from __future__ import annotations

import pytest

from scenarios.checkers import (
    AuditChecker,
    CacheAvailabilityChecker,
    LatencyChecker,
    PhaseThresholds,
    StalenessChecker,
    SteadyStateChecker,
    Truth,
)
from scenarios.checkers.evidence import segments
from scenarios.history import FaultWindow
from scenarios.report import ScenarioResult
from scenarios.run.scenario import parse_scenario
from tests.unit.test_checkers import Synth

WINDOW = FaultWindow("redis-down", "redis", 10.0, 20.0, "down")
NO_TRUTH = Truth()


def audits(s: Synth, start: float, end: float, *, refused: bool = False) -> list[str]:
    """One audit write every 0.2 s in [start, end); the acknowledged event ids."""
    acked = []
    t = start
    n = len(s.events)
    while t < end:
        eid = f"e{n}-{t:.1f}"
        if refused:
            s.op("audit", t, t + 0.01, "fail", request={"event_id": eid}, status=503)
        else:
            s.op(
                "audit", t, t + 0.01, request={"event_id": eid}, response={"path": "db"}, status=202
            )
            acked.append(eid)
        t += 0.2
        n += 1
    return acked


def test_segments_are_baseline_each_window_and_recovery_but_not_the_targets_own_fault() -> None:
    """A target SIGKILL window is no segment: nothing can answer while it is down."""
    s = Synth()
    s.op("cache_get", 29, 30, status=404)
    kill = FaultWindow("target-sigkill", "target", 12.0, 13.0, "sigkill")
    labels = [(g.label, g.start, g.end) for g in segments(s.history(WINDOW, kill))]
    assert labels[:2] == [("baseline", 0.0, 10.0), ("fault window 1 (redis-down)", 10.0, 20.0)]
    assert labels[2][0] == "recovery" and labels[2][1] == 20.0
    assert len(labels) == 3


def test_audit_with_all_writes_refused_during_the_fault_fails_for_insufficient_evidence() -> None:
    """Every audit write answered 503 during the window: no loss, nothing unexpected, and
    still a FAIL, naming the window, because no acknowledgement there was ever judged."""
    s = Synth()
    acked = audits(s, 0, 10) + audits(s, 10, 20, refused=True) + audits(s, 20, 30)
    result = AuditChecker(compare_rows=False).check(
        s.history(WINDOW), Truth({e: 1 for e in acked}, 0)
    )
    assert not result.passed
    assert result.details["counts"]["lost"] == 0
    assert result.details["insufficient_evidence"] == [
        "insufficient evidence: 0 audit acks in fault window 1 (redis-down) (minimum 20)"
    ]
    assert result.summary.startswith("insufficient evidence: 0 audit acks in fault window 1")


def test_audit_with_zero_acks_fails() -> None:
    """A run with no acknowledged audit event at all cannot pass the audit checker."""
    s = Synth()
    s.op("cache_get", 1, 1.01, status=404)
    result = AuditChecker(compare_rows=False).check(s.history(), Truth({}, 0))
    assert not result.passed
    assert "insufficient evidence: 0 audit acks in baseline" in result.summary


def test_audit_with_enough_acks_everywhere_passes() -> None:
    """The same shape with acknowledgements in every segment passes."""
    s = Synth()
    acked = audits(s, 0, 30)
    result = AuditChecker(compare_rows=False).check(
        s.history(WINDOW), Truth({e: 1 for e in acked}, 0)
    )
    assert result.passed, result.summary


def reads(s: Synth, start: float, end: float, step: float = 0.2) -> None:
    t = start
    while t < end:
        s.op("cache_get", t, t + 0.01, key="k", status=200, response={"value": {"v": 1}})
        t += step


def test_cache_availability_with_no_read_in_a_window_fails() -> None:
    """Reads stopped during the outage (nothing judged there): insufficient evidence."""
    s = Synth()
    reads(s, 0, 10)
    reads(s, 20, 30)
    result = CacheAvailabilityChecker().check(s.history(WINDOW), NO_TRUTH)
    assert not result.passed
    assert result.details["failed"] == 0
    assert "insufficient evidence: 0 reads in fault window 1 (redis-down)" in result.summary
    reads(s, 10, 20)
    assert CacheAvailabilityChecker().check(s.history(WINDOW), NO_TRUTH).passed


def test_latency_phase_with_too_few_operations_fails() -> None:
    """Five fast operations in the fault phase are not evidence of a fast fault phase."""
    s = Synth()
    reads(s, 0, 10)
    reads(s, 10, 10.9)
    reads(s, 20, 30)
    checker = LatencyChecker({"fault": PhaseThresholds(p99_s=1.0)})
    result = checker.check(s.history(WINDOW), NO_TRUTH)
    assert not result.passed
    assert "insufficient evidence: 5 operations in fault phase (minimum 20)" in result.summary


def test_staleness_without_versioned_reads_after_the_heal_fails() -> None:
    """No read after the last heal: the after-heal guarantee was never exercised."""
    s = Synth()
    s.op("cache_put", 1, 1.01, key="k", request={"value": {"v": 1}}, status=204)
    reads(s, 2, 10)
    s.op("cache_get", 25, 25.01, key="k", status=404)
    checker = StalenessChecker(during_fault="allowed", after_heal_s=1.0)
    result = checker.check(s.history(WINDOW), NO_TRUTH)
    assert not result.passed
    assert "insufficient evidence: 0 versioned reads in recovery (minimum 20)" in result.summary


def baseline(s: Synth, *, errors: int = 0, health: str = "HEALTHY") -> None:
    reads(s, 0, 9)
    for n in range(errors):
        s.op("audit", 1 + n, 1.5 + n, "info", request={"event_id": f"x{n}"})
    for n in range(5):
        s.op("health", 2 * n, 2 * n + 0.01, status=200, response={"status": health}, process=99)


def test_steady_baseline_passes() -> None:
    """No error, every poll HEALTHY, enough operations: steady."""
    s = Synth()
    baseline(s)
    result = SteadyStateChecker().check(s.history(WINDOW), NO_TRUTH)
    assert result.passed, result.summary


@pytest.mark.parametrize(
    ("errors", "health", "reason"),
    [
        (2, "HEALTHY", "2 errors before the first fault (2 audit info)"),
        (0, "DEGRADED", "5 health polls not HEALTHY before the first fault (5 DEGRADED)"),
    ],
)
def test_unsteady_baseline_is_invalid(errors: int, health: str, reason: str) -> None:
    """Errors or a health other than HEALTHY before the first fault: INVALID."""
    s = Synth()
    baseline(s, errors=errors, health=health)
    result = SteadyStateChecker().check(s.history(WINDOW), NO_TRUTH)
    assert not result.passed
    assert result.summary == f"INVALID: baseline not steady: {reason}"


def test_a_baseline_without_polls_or_operations_is_invalid() -> None:
    """A fault at once (no baseline) leaves nothing to compare with."""
    s = Synth()
    s.op("cache_get", 11, 11.01, status=404)
    result = SteadyStateChecker().check(s.history(WINDOW), NO_TRUTH)
    assert not result.passed
    assert "no health poll before the first fault" in result.summary
    assert "insufficient evidence: 0 operations in baseline" in result.summary


def test_every_scenario_checks_its_steady_state_first_and_the_verdict_says_invalid() -> None:
    """The steady-state check is always there (tunable by `steady_state`), and a failed
    one makes the scenario's verdict INVALID rather than FAIL."""
    scenario = parse_scenario({"name": "x", "expect": {"steady_state": {"max_errors": 2}}})
    # the default workload writes keys: the final-read check comes by default too
    steady, final = scenario.checkers()
    assert final.name == "final_read"
    assert steady.name == "steady-state" and steady.max_errors == 2  # type: ignore[attr-defined]
    assert parse_scenario({"name": "y"}).checkers()[0].name == "steady-state"
    s = Synth()
    baseline(s, errors=3)
    check = SteadyStateChecker().check(s.history(WINDOW), NO_TRUTH)
    result = ScenarioResult("x", "", False, (check,), 1.0)
    assert result.invalid and result.verdict == "INVALID"
    assert ScenarioResult("x", "", False, (), 1.0).verdict == "FAIL"


def test_latency_counts_a_failure_at_the_time_waited() -> None:
    """Hang-then-fail: reads that answer 503 after 5 s make the fault phase's p99 5 s,
    although every successful read was fast."""
    s = Synth()
    reads(s, 0, 10)
    reads(s, 10, 20, step=0.5)
    for n in range(5):
        s.op("cache_get", 10.1 + n, 15.1 + n, "fail", key="k", status=503)
    reads(s, 20, 30)
    result = LatencyChecker({"fault": PhaseThresholds(p99_s=1.0)}).check(
        s.history(WINDOW), NO_TRUTH
    )
    assert not result.passed
    assert result.summary == "fault: p99 5.000s > 1.000s"
    assert result.details["phases"]["fault"]["ok"] == 20


def test_the_report_shows_invalid_and_the_new_categories() -> None:
    """The HTML report: an INVALID verdict, and findings rows for the unsteady baseline,
    insufficient evidence, refused writes and stale-after-heal reads."""
    from scenarios.checkers import WriteAvailabilityChecker
    from scenarios.report import RunSummary
    from scenarios.report.html import render_html_report

    s = Synth()
    baseline(s, errors=3)
    for n in range(30):
        t = 10 + n * 0.3
        s.op("audit", t, t + 0.01, "fail", request={"event_id": f"r{n}"}, status=503)
    s.op("cache_put", 1, 1.01, key="k", request={"value": {"v": 1}}, status=204)
    s.op("cache_put", 2, 2.01, key="k", request={"value": {"v": 2}}, status=204)
    s.op("cache_get", 2.1, 2.11, key="k", status=200, response={"value": {"v": 2}}, process=5)
    s.op("cache_get", 25, 25.01, key="k", status=200, response={"value": {"v": 1}}, process=5)
    history = s.history(WINDOW)
    checks = (
        SteadyStateChecker().check(history, NO_TRUTH),
        WriteAvailabilityChecker.from_options({"audit": 0.0}).check(history, NO_TRUTH),
        StalenessChecker(during_fault="allowed", after_heal_s=1.0).check(history, NO_TRUTH),
    )
    result = ScenarioResult("unsteady", "", False, checks, 1.0)
    html = render_html_report(RunSummary.of([result], 1.0))
    assert '<span class="verdict invalid">INVALID</span>' in html
    findings = html.split("Findings by category", 1)[1].split("</table>", 1)[0]
    for category in (
        "INVALID baseline",
        "insufficient evidence",
        "refused write",
        "stale after heal",
    ):
        assert f"<td>{category}</td>" in findings, category


def breaker_polls(
    s: Synth, spans: list[tuple[float, float, str, str]], instance: str = "i1"
) -> None:
    """Polls every 0.5 s reporting (redis, database) breaker states."""
    for a, b, redis, database in spans:
        t = a
        while t < b:
            body = {
                "status": "HEALTHY",
                "circuit": redis,
                "circuits": {"redis": redis, "database": database},
            }
            s.op("health", t, t + 0.01, status=200, response=body, instance=instance, process=90)
            t += 0.5


def test_a_breaker_that_works_on_the_first_outage_only_fails_the_second_window() -> None:
    """Two Redis windows: opened and closed in the first, never opened in the second."""
    from scenarios.checkers import BreakerTimelineChecker

    first = FaultWindow("redis-down", "redis", 5.0, 10.0, "down")
    second = FaultWindow("redis-down", "redis", 20.0, 25.0, "down")
    s = Synth()
    breaker_polls(
        s, [(0, 6, "CLOSED", "CLOSED"), (6, 11, "OPEN", "CLOSED"), (11, 30, "CLOSED", "CLOSED")]
    )
    result = BreakerTimelineChecker(open_within_s=2, close_within_s=4).check(
        s.history(first, second), NO_TRUTH
    )
    assert not result.passed
    assert result.details["violations"] == ["window 2 (redis-down): the breaker never opened"]
    rows = result.details["instances"]["i1"]["windows"]
    assert rows[0]["time_to_open_s"] == pytest.approx(1.01) and rows[1]["time_to_open_s"] is None


def test_the_database_breaker_and_a_silent_instance_are_judged() -> None:
    """targets = redis + postgres: the database breaker must open in the PostgreSQL
    window; an instance that never reports a state fails."""
    from scenarios.checkers import BreakerTimelineChecker

    pg = FaultWindow("postgres-down", "postgres", 5.0, 10.0, "down")
    rd = FaultWindow("redis-down", "redis", 5.0, 10.0, "down")
    s = Synth()
    breaker_polls(
        s, [(0, 6, "CLOSED", "CLOSED"), (6, 11, "OPEN", "CLOSED"), (11, 20, "CLOSED", "CLOSED")]
    )
    s.op("cache_get", 1, 1.01, key="k", status=404, instance="i2")  # i2 took part, never polled
    checker = BreakerTimelineChecker(
        open_within_s=2, close_within_s=4, targets=("redis", "postgres")
    )
    result = checker.check(s.history(pg, rd), NO_TRUTH)
    assert not result.passed
    assert "i1: postgres: the breaker never opened" in result.details["violations"]
    assert "i2: redis: never reported the redis breaker's state" in result.details["violations"]


def health(s: Synth, a: float, b: float, status: str | None, instance: str = "i1") -> None:
    t = a
    while t < b:
        if status is None:
            s.op("health", t, t + 0.4, "info", instance=instance, process=91)
        else:
            body = {"status": status}
            s.op("health", t, t + 0.01, status=200, response=body, instance=instance, process=91)
        t += 0.5


def test_health_is_judged_between_faults_per_instance_and_silence_is_no_pass() -> None:
    """DEGRADED in the gap between two Redis outages fails; an instance with no checked
    poll in a window fails; polls with no answer inside a window fail."""
    from scenarios.checkers import HealthChecker

    first = FaultWindow("redis-down", "redis", 5.0, 10.0, "down")
    second = FaultWindow("redis-down", "redis", 20.0, 25.0, "down")
    s = Synth()
    health(s, 0, 5, "HEALTHY")
    health(s, 5, 17, "DEGRADED")  # still DEGRADED 5 s after the first heal
    health(s, 17, 25, "DEGRADED")
    health(s, 25, 35, "HEALTHY")
    health(s, 0, 35, "HEALTHY", instance="i2")  # i2 never says DEGRADED...
    result = HealthChecker(grace_s=2.0).check(s.history(first, second), NO_TRUTH)
    assert not result.passed
    between = [v for v in result.details["samples"] if v["when"] == "between"]
    assert between and between[0]["status"] == "DEGRADED" and between[0]["instance"] == "i1"
    s2 = Synth()
    health(s2, 0, 5, "HEALTHY")
    health(s2, 5, 10, None)  # no answer during the outage
    health(s2, 10, 20, "HEALTHY")
    silent = HealthChecker(grace_s=2.0).check(s2.history(first), NO_TRUTH)
    assert not silent.passed
    assert silent.details["unanswered_during"] == 6
    assert "no health poll checked inside 'redis-down'" in silent.summary


def test_recovery_bounded_against_the_baseline() -> None:
    """Recovery twice as slow as the baseline, at a third of its rate: both relative
    bounds fail; the same recovery passes looser ones."""
    s = Synth()
    reads(s, 0, 10, step=0.1)  # 100 reads at 10 ms
    t = 20.0
    while t < 30:
        s.op("cache_get", t, t + 0.05, key="k", status=200, response={"value": {"v": 1}})
        t += 0.3
    reads(s, 10, 20)
    strict = PhaseThresholds(p99_vs_baseline=3.0, min_throughput_vs_baseline=0.5)
    result = LatencyChecker({"recovery": strict}).check(s.history(WINDOW), NO_TRUTH)
    assert not result.passed
    assert "recovery: p99 0.050s > 3 x baseline 0.010s" in result.summary
    assert "recovery: throughput 3.4/s < 0.5 x baseline 10." in result.summary
    loose = PhaseThresholds(p99_vs_baseline=6.0, min_throughput_vs_baseline=0.3)
    assert LatencyChecker({"recovery": loose}).check(s.history(WINDOW), NO_TRUTH).passed


def _timed_reads(s: Synth, start: float, end: float, took: list[float]) -> None:
    """One read every 0.1 s in [start, end), taking the durations of `took` in turn."""
    t, i = start, 0
    while t < end:
        s.op("cache_get", t, t + took[i % len(took)], key="k", status=200, response={"v": 1})
        t, i = t + 0.1, i + 1


def test_fault_p95_is_bounded_over_the_baseline_p95() -> None:
    """A loaded machine (every call ~80-120 ms, before and during the fault) passes 0.1 s
    over the baseline's p95 though its p95 is over an absolute 0.1 s; a herd (a fifth of
    the fault's calls wait 0.5 s) on a quiet baseline fails it, naming both figures."""
    loaded = Synth()
    _timed_reads(loaded, 0, 10, [0.08])
    _timed_reads(loaded, 10, 20, [0.08, 0.09, 0.10, 0.11, 0.12])
    _timed_reads(loaded, 20, 30, [0.08])
    over = PhaseThresholds(p95_over_baseline_s=0.1)
    assert LatencyChecker({"fault": over}).check(loaded.history(WINDOW), NO_TRUTH).passed
    absolute = PhaseThresholds(p95_s=0.1)
    assert not LatencyChecker({"fault": absolute}).check(loaded.history(WINDOW), NO_TRUTH).passed
    herd = Synth()
    _timed_reads(herd, 0, 10, [0.03])
    _timed_reads(herd, 10, 20, [0.01, 0.01, 0.01, 0.01, 0.5])
    _timed_reads(herd, 20, 30, [0.03])
    result = LatencyChecker({"fault": over}).check(herd.history(WINDOW), NO_TRUTH)
    assert not result.passed
    assert "fault: p95 0.500s > baseline 0.030s + 0.100s" in result.summary


def test_a_window_of_a_few_milliseconds_is_not_judged_for_evidence() -> None:
    """A fault whose recorded window lasted 20 ms (applying it took the time) cannot hold
    20 acknowledgements: it is not judged, while a 1 s window with none fails."""
    s = Synth()
    acked = audits(s, 0, 30)
    truth = Truth({e: 1 for e in acked}, 0)
    tiny = FaultWindow("redis-fill", "redis", 10.0, 10.02, "fill")
    assert AuditChecker(compare_rows=False).check(s.history(tiny), truth).passed
    s2 = Synth()
    acked2 = audits(s2, 0, 10) + audits(s2, 11, 30)
    one_s = FaultWindow("redis-fill", "redis", 10.0, 11.0, "fill")
    result = AuditChecker(compare_rows=False).check(
        s2.history(one_s), Truth({e: 1 for e in acked2}, 0)
    )
    assert "insufficient evidence: 0 audit acks in fault window 1 (redis-fill)" in result.summary
