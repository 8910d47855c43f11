"""Checkers: each one passes a healthy synthetic history and flags a broken one."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from scenarios.checkers import (
    AuditChecker,
    BreakerTimelineChecker,
    CacheAvailabilityChecker,
    CheckResult,
    HealthChecker,
    LatencyChecker,
    PhaseThresholds,
    StalenessChecker,
    Truth,
    percentiles,
    phase_of,
    phase_spans,
    run_checkers,
)
from scenarios.checkers.latency import percentile
from scenarios.history import JSON, Event, FaultWindow, History, Outcome

NO_TRUTH = Truth()


class Synth:
    """Builds a synthetic history op by op (invoke + completion)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def op(
        self,
        f: str,
        start: float,
        end: float | None,
        outcome: Outcome = "ok",
        *,
        key: str | None = None,
        request: JSON = None,
        response: JSON = None,
        status: int | None = None,
        instance: str | None = None,
        process: int = 0,
    ) -> Synth:
        i = len(self.events)
        self.events.append(Event(i, process, "invoke", f, key, request, start, instance=instance))
        if end is not None:
            self.events.append(
                Event(
                    i + 1,
                    process,
                    outcome,
                    f,
                    key,
                    response,
                    end,
                    status=status,
                    instance=instance,
                    ref=i,
                )
            )
        return self

    def history(self, *windows: FaultWindow) -> History:
        return History(self.events, windows)


def assert_json_safe(result: CheckResult) -> None:
    """Details and thresholds must survive JSON encoding unchanged."""
    for part in (result.details, result.thresholds):
        assert json.loads(json.dumps(part, allow_nan=False)) == json.loads(json.dumps(part))


# --- audit ---------------------------------------------------------------------------


def audit_op(
    s: Synth, eid: str, outcome: Outcome, t: float, path: str = "queue", status: int | None = None
) -> None:
    response = {"event_id": eid, "path": path} if outcome == "ok" else None
    code = status if status is not None else {"ok": 202, "fail": 503, "info": None}[outcome]
    s.op(
        "audit",
        t,
        t + 0.01,
        outcome,
        request={"event_id": eid, "actor": "x"},
        response=response,
        status=code,
    )


def test_audit_healthy_history_passes_and_reports_every_category() -> None:
    """Acked events present once, refusals absent, unknowns either way: a pass."""
    s = Synth()
    audit_op(s, "a1", "ok", 1, "queue")
    audit_op(s, "a2", "ok", 2, "db")
    audit_op(s, "a3", "ok", 3, "file")
    audit_op(s, "r1", "fail", 4)
    audit_op(s, "r2", "fail", 5, status=422)
    audit_op(s, "u1", "info", 6)
    audit_op(s, "u2", "info", 7)
    truth = Truth(audit_rows={"a1": 1, "a2": 1, "a3": 1, "r2": 1, "u1": 1}, audit_pending=0)
    result = AuditChecker(compare_rows=False, min_evidence=0).check(s.history(), truth)
    assert result.passed, result.summary
    counts = result.details["counts"]
    assert counts["lost"] == counts["duplicated"] == counts["unexpected"] == 0
    assert counts["recovered_after_fail"] == 1 and counts["refused_absent"] == 1
    assert counts["unknown_present"] == 1 and counts["unknown_absent"] == 1
    assert result.details["acks_per_path"] == {"queue": 1, "db": 1, "file": 1}
    assert result.details["samples"]["recovered_after_fail"] == ["r2"]
    assert "3 acknowledged" in result.summary
    assert_json_safe(result)


def test_audit_flags_lost_duplicated_and_unexpected_events() -> None:
    """The broken variant: an ack without a durable write, a replay, a phantom row."""
    s = Synth()
    audit_op(s, "kept", "ok", 1, "queue")
    audit_op(s, "lost", "ok", 2, "file")
    audit_op(s, "dup", "ok", 3, "queue")
    truth = Truth(audit_rows={"kept": 1, "dup": 2, "ghost": 1}, audit_pending=0)
    result = AuditChecker(compare_rows=False).check(s.history(), truth)
    assert not result.passed
    assert result.details["counts"]["lost"] == 1
    assert result.details["counts"]["duplicated"] == 1
    assert result.details["counts"]["unexpected"] == 1
    assert result.details["samples"]["lost"] == ["lost"]
    assert result.details["samples"]["unexpected"] == ["ghost"]
    assert result.details["by_path"]["file"] == {"acked": 1, "lost": 1, "duplicated": 0}
    assert "1 lost" in result.summary and "1 duplicated" in result.summary


@pytest.mark.parametrize(
    ("require_drained", "pending", "passed", "phrase"),
    [
        (True, 3, False, "3 pending"),
        (False, 3, True, "3 pending"),
        (True, 0, True, "0 pending"),
        (True, None, False, "backlog not read"),
        (False, None, True, "backlog not read"),
    ],
)
def test_audit_pending_backlog(
    require_drained: bool, pending: int | None, passed: bool, phrase: str
) -> None:
    """A backlog left after recovery, or one never read, fails only when draining is
    required."""
    s = Synth()
    audit_op(s, "a", "ok", 1)
    result = AuditChecker(
        compare_rows=False, require_drained=require_drained, min_evidence=0
    ).check(s.history(), Truth(audit_rows={"a": 1}, audit_pending=pending))
    assert result.passed is passed
    assert phrase in result.summary


def test_audit_retry_after_unknown_counts_as_acked_and_mismatched_ack_fails() -> None:
    """Retries of one event_id merge; an ack naming another id is a contract breach."""
    s = Synth()
    audit_op(s, "e1", "info", 1)
    audit_op(s, "e1", "ok", 2)
    result = AuditChecker(compare_rows=False, min_evidence=0).check(
        s.history(), Truth(audit_rows={}, audit_pending=0)
    )
    assert not result.passed and result.details["counts"]["lost"] == 1
    assert result.details["counts"]["unknown_absent"] == 0
    s2 = Synth()
    s2.op(
        "audit",
        1,
        1.1,
        "ok",
        request={"event_id": "e2"},
        response={"event_id": "other", "path": "db"},
        status=202,
    )
    bad = AuditChecker(compare_rows=False).check(
        s2.history(), Truth(audit_rows={"e2": 1}, audit_pending=0)
    )
    assert not bad.passed and bad.details["counts"]["ack_mismatch"] == 1


def test_audit_counts_events_recorded_by_beneficio_updates() -> None:
    """A beneficio PUT that returns its audit event_id is an attempt like POST /audit."""
    s = Synth()
    s.op(
        "beneficio_put",
        1,
        1.1,
        key="b1",
        request={"v": 1},
        response={"id": "b1", "event_id": "ben-1"},
        status=200,
    )
    s.op(
        "beneficio_put",
        2,
        2.1,
        key="b2",
        request={"v": 1},
        response={"id": "b2", "event_id": "ben-2"},
        status=200,
    )
    s.op("beneficio_put", 3, 3.1, "fail", key="b3", request={"v": 1}, status=503)
    truth = Truth(audit_rows={"ben-1": 1}, audit_pending=0)
    result = AuditChecker(compare_rows=False).check(s.history(), truth)
    assert not result.passed
    assert result.details["samples"]["lost"] == ["ben-2"]
    assert result.details["counts"]["unexpected"] == 0
    assert result.details["ops_without_event_id"] == {"beneficio_put": 1}
    only_audit = AuditChecker(compare_rows=False, fs=("audit",)).check(s.history(), truth)
    assert not only_audit.passed and only_audit.details["samples"]["unexpected"] == ["ben-1"]


# --- cache availability ----------------------------------------------------------------


def test_cache_availability_passes_hits_and_404_misses() -> None:
    """200s and 404 misses are answers; writes are not reads."""
    s = Synth()
    s.op("cache_get", 1, 1.01, status=200, key="a", response={"value": {"v": 1}})
    s.op("cache_get", 2, 2.01, "fail", status=404, key="b")
    s.op("beneficio_get", 3, 3.01, "ok", status=404, key="c")
    s.op("cache_put", 4, 4.5, "info", key="a")
    result = CacheAvailabilityChecker(min_evidence=0).check(s.history(), NO_TRUTH)
    assert result.passed, result.summary
    assert result.details["reads"] == 3 and result.details["misses_404"] == 2


def test_cache_availability_flags_5xx_and_unknown_reads() -> None:
    """The broken variant: a cache that raises (500) or hangs (info) while Redis is down."""
    s = Synth()
    window = FaultWindow("redis-down", "redis", 5, 10, "down")
    s.op("cache_get", 1, 1.01, status=200, key="a", response={"value": {"v": 1}})
    s.op("cache_get", 6, 6.01, "fail", status=500, key="a")
    s.op("cache_get", 7, 9.0, "info", key="a")
    s.op("beneficio_get", 8, 8.01, "ok", status=502, key="z")
    result = CacheAvailabilityChecker(min_evidence=0).check(s.history(window), NO_TRUTH)
    assert not result.passed
    assert result.details["failed"] == 3
    assert result.details["failed_by_phase"] == {"fault": 3}
    assert result.details["failed_by_reason"] == {"http 500": 1, "unknown (info)": 1, "http 502": 1}
    tolerant = CacheAvailabilityChecker(max_failed_reads=3, min_evidence=0).check(
        s.history(window), NO_TRUTH
    )
    assert tolerant.passed
    assert_json_safe(result)


def test_a_200_read_without_a_value_is_a_failed_read() -> None:
    """An independent target answered `{"value": null}` (200) for every read while Redis
    was down: that is no answer, not a hit (it used to pass as one)."""
    s = Synth()
    window = FaultWindow("redis-down", "redis", 5, 10, "down")
    s.op("cache_get", 1, 1.01, status=200, key="a", response={"key": "a", "value": {"v": 1}})
    s.op("cache_get", 6, 6.01, status=200, key="a", response={"key": "a", "value": None})
    result = CacheAvailabilityChecker(min_evidence=0).check(s.history(window), NO_TRUTH)
    assert not result.passed
    assert result.details["failed_by_reason"] == {"no value": 1}


# --- staleness -------------------------------------------------------------------------


def versioned(s: Synth) -> Synth:
    """Two ok writes of key k (v1 done at 1.1, v2 done at 2.1), one unknown write (v3)."""
    s.op("cache_put", 1.0, 1.1, key="k", request={"value": {"v": 1}}, status=204)
    s.op("cache_put", 2.0, 2.1, key="k", request={"value": {"v": 2}}, status=204)
    s.op("cache_put", 3.0, 9.0, "info", key="k", request={"value": {"v": 3}})
    return s


def read(s: Synth, t: float, v: int | None, key: str = "k", source: str = "l2") -> None:
    if v is None:
        s.op("cache_get", t, t + 0.01, "ok", key=key, status=404)
    else:
        s.op(
            "cache_get",
            t,
            t + 0.01,
            "ok",
            key=key,
            status=200,
            response={"key": key, "value": {"v": v}, "source": source},
        )


def test_staleness_passes_reads_within_the_bound() -> None:
    """Old versions read within bound_s of a newer write, misses, and unknown writes pass."""
    s = versioned(Synth())
    read(s, 1.5, 1)
    read(s, 2.4, 1)  # v2 completed 0.3 s ago: inside the 0.5 s bound
    read(s, 2.5, 2)
    read(s, 8.0, 2)  # v3's write never completed ok: not newer
    read(s, 8.5, None)  # a 404 is ignored
    s.op("beneficio_put", 8.6, 8.7, "ok", key="b1", request={"v": 4}, status=200)
    s.op("beneficio_get", 9, 9.1, "ok", key="b1", status=200, response={"id": "b1", "v": 4})
    result = StalenessChecker(bound_s=0.5, min_evidence=0).check(s.history(), NO_TRUTH)
    assert result.passed, result.summary
    assert result.details["reads_checked"] == 5


def test_staleness_flags_an_old_version_long_after_a_newer_write() -> None:
    """The broken variant: an L1 never invalidated keeps serving v1 after v2 completed."""
    s = versioned(Synth())
    read(s, 2.4, 1)
    read(s, 5.1, 1, source="l1")
    read(s, 7.1, 1, source="stale")
    result = StalenessChecker(bound_s=0.5).check(s.history(), NO_TRUTH)
    assert not result.passed
    assert result.details["stale"] == 2
    assert result.details["worst_staleness_s"] == pytest.approx(5.0)
    assert result.details["stale_marked_by_target"] == 1
    assert result.details["samples"][0]["read_version"] == 1
    assert_json_safe(result)


# --- latency ---------------------------------------------------------------------------


def test_percentiles_match_hand_computed_nearest_rank() -> None:
    """Nearest rank: ceil(p/100*n)-th smallest; the classic 5-value example and 1..20."""
    values = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert [percentile(values, p) for p in (5, 30, 40, 50, 100)] == [15, 20, 20, 35, 50]
    twenty = [float(i) for i in range(1, 21)]
    assert percentile(twenty, 95) == 19.0  # rank 19 exactly: no float rounding up to 20
    stats = percentiles(reversed([float(i) for i in range(1, 101)]))
    assert (stats.count, stats.p50, stats.p95, stats.p99, stats.max) == (100, 50, 95, 99, 100)
    empty = percentiles([])
    assert empty.count == 0 and empty.p99 is None
    with pytest.raises(ValueError):
        percentile(values, 0)


def test_phase_of_and_spans() -> None:
    """Baseline before the first fault, fault inside, between gaps, recovery after."""
    windows = [FaultWindow("a", "redis", 2, 4), FaultWindow("b", "redis", 6, 8)]
    assert [phase_of(t, windows) for t in (1, 2, 3.9, 4, 5, 7, 8, 20)] == [
        "baseline",
        "fault",
        "fault",
        "between",
        "between",
        "fault",
        "recovery",
        "recovery",
    ]
    assert phase_of(5, []) == "baseline"
    assert phase_of(50, [FaultWindow("c", "postgres", 2, None)]) == "fault"
    assert phase_spans(windows, 10) == {"baseline": 2, "fault": 4, "between": 2, "recovery": 2}
    overlapping = [FaultWindow("a", "redis", 1, 5), FaultWindow("b", "postgres", 3, 6)]
    assert phase_spans(overlapping, 10)["fault"] == 5
    assert phase_spans([FaultWindow("c", "redis", 4, None)], 10)["recovery"] == 0


def latency_history(fault_latency: float) -> History:
    """10 s baseline at 10 ms, a 10 s fault at `fault_latency`, 10 s recovery at 10 ms."""
    s = Synth()
    for i in range(300):
        t = i * 0.1
        lat = fault_latency if 10 <= t < 20 else 0.01
        s.op("cache_get", t, t + lat, key="k", status=200)
    return s.history(FaultWindow("redis-latency", "redis", 10, 20, "latency"))


THRESHOLDS = {
    "baseline": PhaseThresholds(p99_s=0.05),
    "fault": PhaseThresholds(p99_s=0.5, max_s=1.0, min_throughput=5),
    "recovery": PhaseThresholds(p50_s=0.05, p99_s=0.05),
}


def test_latency_within_thresholds_passes_with_per_phase_stats() -> None:
    """A service that stays fast enough under fault passes; stats per phase are right."""
    result = LatencyChecker(THRESHOLDS).check(latency_history(0.2), NO_TRUTH)
    assert result.passed, result.summary
    phases = result.details["phases"]
    assert phases["fault"]["ok"] == 100 and phases["baseline"]["ok"] == 100
    assert phases["fault"]["latency"]["p99"] == pytest.approx(0.2)
    assert phases["fault"]["throughput"] == pytest.approx(10.0)
    assert phases["between"]["ops"] == 0
    assert_json_safe(result)


def test_latency_flags_slow_fault_phase() -> None:
    """The broken variant: no timeout, every read waits 1.5 s during the fault."""
    result = LatencyChecker(THRESHOLDS).check(latency_history(1.5), NO_TRUTH)
    assert not result.passed
    assert "fault: p99 1.500s > 0.500s" in result.details["violations"]
    assert "fault: max 1.500s > 1.000s" in result.details["violations"]
    assert all(v.startswith("fault") for v in result.details["violations"])


def test_latency_without_fault_windows_skips_fault_thresholds() -> None:
    """No windows: everything is baseline; the fault/recovery thresholds are skipped."""
    s = Synth()
    for i in range(50):
        s.op("cache_get", i * 0.1, i * 0.1 + 0.002, status=200)
    result = LatencyChecker(THRESHOLDS).check(s.history(), NO_TRUTH)
    assert result.passed, result.summary
    assert result.details["skipped_phases"] == ["fault", "recovery"]
    slow = LatencyChecker({"baseline": PhaseThresholds(p50_s=0.001)}).check(s.history(), NO_TRUTH)
    assert not slow.passed


def test_latency_phase_with_only_unknown_outcomes_fails() -> None:
    """A phase where nothing answered cannot pass a latency bound; an unknown outcome
    counts at the time the client waited (here 5 s), so a hang never looks fast."""
    s = Synth()
    s.op("cache_get", 1, 1.01, status=200)
    s.op("cache_get", 3, 8, "info")
    s.op("cache_get", 12, 12.01, status=200)
    history = s.history(FaultWindow("bh", "redis", 2, 10, "timeout"))
    result = LatencyChecker({"fault": PhaseThresholds(p99_s=1)}, min_evidence=0).check(
        history, NO_TRUTH
    )
    assert not result.passed
    assert result.details["violations"] == [
        "fault: no successful operation out of 1",
        "fault: p99 5.000s > 1.000s",
    ]
    with pytest.raises(ValueError, match="unknown phases"):
        LatencyChecker({"during": PhaseThresholds()})


# --- breaker ---------------------------------------------------------------------------


def polls(
    s: Synth,
    states: Sequence[tuple[float, float, str]],
    instance: str | None = None,
    f: str = "health",
) -> None:
    """Polls every 0.5 s from `a` to `b` reporting `state`."""
    for a, b, state in states:
        t = a
        while t < b:
            response: JSON = (
                {"status": "HEALTHY", "circuit": state}
                if f == "health"
                else {"redis": {"circuitState": state.lower()}}
            )
            s.op(f, t, t + 0.01, key=None, status=200, response=response, instance=instance)
            t += 0.5


REDIS_WINDOW = FaultWindow("redis-down", "redis", 10, 20, "down")


def test_breaker_opens_and_closes_in_time() -> None:
    """Opens 1 s into the fault, half-opens, closes 5 s after healing: a pass."""
    s = Synth()
    polls(s, [(0, 11, "CLOSED"), (11, 24, "OPEN"), (24, 25, "HALF_OPEN"), (25, 30, "CLOSED")])
    result = BreakerTimelineChecker(open_within_s=2, close_within_s=10).check(
        s.history(REDIS_WINDOW), NO_TRUTH
    )
    assert result.passed, result.summary
    report = result.details["instances"]["default"]
    assert report["time_to_open_s"] == pytest.approx(1.01)
    assert report["time_to_close_s"] == pytest.approx(5.01)
    assert [state for _, state in report["timeline"]] == ["CLOSED", "OPEN", "HALF_OPEN", "CLOSED"]
    assert_json_safe(result)


def test_breaker_that_never_opens_is_flagged() -> None:
    """The broken variant: a breaker that stays CLOSED through a Redis outage."""
    s = Synth()
    polls(s, [(0, 30, "CLOSED")])
    result = BreakerTimelineChecker(open_within_s=2, close_within_s=10).check(
        s.history(REDIS_WINDOW), NO_TRUTH
    )
    assert not result.passed
    assert "never opened" in result.summary


def test_breaker_opening_late_or_never_closing_is_flagged() -> None:
    """Opens after 6 s (bound 2 s) and stays open after healing (seen via /resilience)."""
    s = Synth()
    polls(s, [(0, 16, "CLOSED"), (16, 30, "OPEN")], f="resilience")
    result = BreakerTimelineChecker(open_within_s=2, close_within_s=5).check(
        s.history(REDIS_WINDOW), NO_TRUTH
    )
    assert not result.passed
    violations = result.details["violations"]
    assert any(v.startswith("opened after 6.01s") for v in violations)
    assert "the breaker did not close after healing" in violations


def test_breaker_without_redis_window_or_polls() -> None:
    """Bounds with nothing to measure fail; an observe-only checker passes."""
    s = Synth()
    polls(s, [(0, 5, "CLOSED")])
    pg = FaultWindow("pg-down", "postgres", 1, 3, "down")
    assert not BreakerTimelineChecker(open_within_s=2).check(s.history(pg), NO_TRUTH).passed
    assert BreakerTimelineChecker().check(s.history(pg), NO_TRUTH).passed
    empty = BreakerTimelineChecker(open_within_s=2).check(Synth().history(REDIS_WINDOW), NO_TRUTH)
    assert not empty.passed and "no redis breaker state was observed" in empty.summary


def test_breaker_checks_each_instance() -> None:
    """Two instances: the one whose breaker never opens fails the check."""
    s = Synth()
    polls(s, [(0, 11, "CLOSED"), (11, 21, "OPEN"), (21, 30, "CLOSED")], instance="a")
    polls(s, [(0, 30, "CLOSED")], instance="b")
    result = BreakerTimelineChecker(open_within_s=2, close_within_s=5).check(
        s.history(REDIS_WINDOW), NO_TRUTH
    )
    assert not result.passed
    assert result.details["violations"] == ["b: the breaker never opened"]


# --- health ----------------------------------------------------------------------------


def health_polls(s: Synth, spans: Sequence[tuple[float, float, str | None]]) -> None:
    """Health polls every 0.5 s; a None status is a poll that timed out."""
    for a, b, status in spans:
        t = a
        while t < b:
            if status is None:
                s.op("health", t, t + 0.4, "info")
            else:
                s.op(
                    "health",
                    t,
                    t + 0.01,
                    status=200 if status == "HEALTHY" else 503,
                    response={"status": status, "circuit": "CLOSED"},
                )
            t += 0.5


def test_health_matches_faults_passes() -> None:
    """HEALTHY → DEGRADED (redis down, after a lag within grace) → HEALTHY after healing."""
    s = Synth()
    health_polls(s, [(0, 11, "HEALTHY"), (11, 21, "DEGRADED"), (21, 40, "HEALTHY")])
    result = HealthChecker(grace_s=2).check(s.history(REDIS_WINDOW), NO_TRUTH)
    assert result.passed, result.summary
    assert result.details["checked_during"] > 10 and result.details["checked_after"] > 10
    assert_json_safe(result)


def test_health_that_always_says_healthy_is_flagged() -> None:
    """The broken variant: HEALTHY while Redis is down."""
    s = Synth()
    health_polls(s, [(0, 40, "HEALTHY")])
    result = HealthChecker(grace_s=2).check(s.history(REDIS_WINDOW), NO_TRUTH)
    assert not result.passed
    assert result.details["samples"][0]["status"] == "HEALTHY"
    assert result.details["samples"][0]["allowed"] == ["DEGRADED"]


def test_health_expectations_per_target_and_combination() -> None:
    """Postgres down needs UNHEALTHY; both down too (the "postgres+redis" key)."""
    pg = FaultWindow("pg-down", "postgres", 10, 20, "down")
    wrong = Synth()
    health_polls(wrong, [(0, 10, "HEALTHY"), (10, 20, "DEGRADED"), (20, 40, "HEALTHY")])
    assert not HealthChecker(grace_s=2).check(wrong.history(pg), NO_TRUTH).passed
    both = Synth()
    health_polls(
        both, [(0, 10, "HEALTHY"), (10, 14, "DEGRADED"), (14, 20, "UNHEALTHY"), (20, 40, "HEALTHY")]
    )
    redis = FaultWindow("redis-down", "redis", 10, 20, "down")
    pg2 = FaultWindow("pg-down", "postgres", 12, 20, "down")
    result = HealthChecker(grace_s=2).check(both.history(redis, pg2), NO_TRUTH)
    assert result.passed, result.summary
    lenient = Synth()
    health_polls(lenient, [(0, 10, "HEALTHY"), (10, 20, "DEGRADED"), (20, 40, "HEALTHY")])
    result = HealthChecker(grace_s=2).check(lenient.history(redis, pg2), NO_TRUTH)
    assert not result.passed
    assert result.details["samples"][0]["allowed"] == ["UNHEALTHY"]


def test_health_needs_observations_and_answers_after_recovery() -> None:
    """No poll inside the window fails; a poll without answer after recovery fails."""
    sparse = Synth()
    health_polls(sparse, [(0, 10, "HEALTHY"), (25, 40, "HEALTHY")])
    result = HealthChecker(grace_s=2).check(sparse.history(REDIS_WINDOW), NO_TRUTH)
    assert not result.passed and result.details["coverage_problems"]
    silent = Synth()
    health_polls(
        silent,
        [
            (0, 11, "HEALTHY"),
            (11, 20, "DEGRADED"),
            (20, 30, "HEALTHY"),
            (30, 31, None),
            (31, 40, "HEALTHY"),
        ],
    )
    result = HealthChecker(grace_s=2).check(silent.history(REDIS_WINDOW), NO_TRUTH)
    assert not result.passed
    assert result.details["violations"] == 2
    assert result.details["samples"][0]["status"] is None


def test_health_without_faults_expects_healthy_throughout() -> None:
    """No fault window: after the grace period every poll must be HEALTHY."""
    ok = Synth()
    health_polls(ok, [(0, 10, "HEALTHY")])
    assert HealthChecker(grace_s=1).check(ok.history(), NO_TRUTH).passed
    degraded = Synth()
    health_polls(degraded, [(0, 10, "DEGRADED")])
    assert not HealthChecker(grace_s=1).check(degraded.history(), NO_TRUTH).passed


# --- running checkers ----------------------------------------------------------------


@dataclass(frozen=True)
class Exploding:
    """A checker with a bug."""

    name: str = "exploding"

    def check(self, history: History, truth: Truth) -> CheckResult:
        raise KeyError("missing")


def test_run_checkers_turns_a_crash_into_a_failed_result() -> None:
    """A checker that raises fails its own check without stopping the others."""
    results = run_checkers(
        [Exploding(), CacheAvailabilityChecker(min_evidence=0)], Synth().history(), NO_TRUTH
    )
    assert [r.checker for r in results] == ["exploding", "cache-availability"]
    assert not results[0].passed and "KeyError" in results[0].summary
    assert results[1].passed
