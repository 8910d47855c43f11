"""The `prometheus_alerts` checker on synthetic timelines: each way an alert can be wrong
(never fired, fired before the fault, never resolved, resolved too late, a quiet alert
fired, no evidence) is flagged for its reason, and a correct timeline passes."""

from __future__ import annotations

import json

import pytest

from scenarios.checkers.base import Truth
from scenarios.checkers.prometheus import (
    AlertTimeline,
    PrometheusAlertsChecker,
    timeline_from_alerts,
)
from scenarios.history import FaultWindow, History
from scenarios.run.scenario import ScenarioError, parse_scenario

WALL_T0 = 1_700_000_000.0
FAULT = FaultWindow("redis-down", "redis", 3.0, 8.0, "down")
HISTORY = History([], [FAULT])
ALERT = "REDIS_MULTIPLE_FAILURES"


def timeline(firing: dict[str, tuple[float, float]], until: float = 60.0) -> AlertTimeline:
    """Alerts firing every second over [start, end] (history time)."""
    return AlertTimeline(
        firing={
            name: tuple(float(t) for t in range(int(a), int(b) + 1))
            for name, (a, b) in firing.items()
        },
        step_s=1.0,
        observed_until=until,
        wall_t0=WALL_T0,
    )


def check(checker: PrometheusAlertsChecker, tl: AlertTimeline | None) -> tuple[bool, str]:
    result = checker.check(HISTORY, Truth(alerts=tl))
    json.dumps(result.to_json(), allow_nan=False)
    return result.passed, result.summary


def test_fired_during_the_fault_and_resolved_after_passes() -> None:
    """Fires 2 s into the fault, resolves 40 s after healing: a pass naming both times."""
    passed, summary = check(PrometheusAlertsChecker(fire=[ALERT]), timeline({ALERT: (5, 48)}))
    assert passed, summary
    assert "REDIS_MULTIPLE_FAILURES at 5.0s" in summary


def test_an_alert_that_never_fired_fails() -> None:
    """The broken variant whose failure counter never moves: no firing at all."""
    passed, summary = check(PrometheusAlertsChecker(fire=[ALERT]), timeline({}))
    assert not passed
    assert "REDIS_MULTIPLE_FAILURES never fired during the fault" in summary


def test_firing_only_long_after_the_fault_fails() -> None:
    """Firing 20 s after healing is not "during the fault" (lag 5 s)."""
    passed, summary = check(PrometheusAlertsChecker(fire=[ALERT]), timeline({ALERT: (28, 30)}))
    assert not passed
    assert "never fired during the fault" in summary


def test_an_alert_already_firing_before_the_fault_fails() -> None:
    """An always-on alert proves nothing."""
    passed, summary = check(PrometheusAlertsChecker(fire=[ALERT]), timeline({ALERT: (0, 20)}))
    assert not passed
    assert "already firing at 0.0s, before the first fault" in summary


def test_an_alert_still_firing_at_the_end_fails() -> None:
    """Never resolved: firing at the last observed evaluation."""
    passed, summary = check(PrometheusAlertsChecker(fire=[ALERT]), timeline({ALERT: (5, 60)}))
    assert not passed
    assert "still firing at the end of the observation" in summary


def test_an_alert_left_out_of_resolve_only_has_to_fire() -> None:
    """`resolve = []`: still firing at the end passes, never firing still fails."""
    checker = PrometheusAlertsChecker(fire=[ALERT], resolve=[])
    passed, summary = check(checker, timeline({ALERT: (5, 60)}))
    assert passed, summary
    assert "resolved" not in summary
    passed, summary = check(checker, timeline({}))
    assert not passed
    assert "never fired during the fault" in summary


def test_resolve_must_name_alerts_of_fire() -> None:
    """An alert to resolve that is not expected to fire is a mistake in the scenario."""
    with pytest.raises(ValueError, match="resolve must name alerts of fire"):
        PrometheusAlertsChecker(fire=[ALERT], resolve=["SYSTEM_UNHEALTHY"])


def test_resolving_later_than_allowed_fails() -> None:
    passed, summary = check(
        PrometheusAlertsChecker(fire=[ALERT], resolve_within_s=30),
        timeline({ALERT: (5, 50)}, until=70),
    )
    assert not passed
    assert "resolved only 42.0s after healing (allowed 30s)" in summary


def test_a_quiet_alert_that_fired_fails() -> None:
    passed, summary = check(
        PrometheusAlertsChecker(fire=[ALERT], quiet=["SYSTEM_UNHEALTHY"]),
        timeline({ALERT: (5, 40), "SYSTEM_UNHEALTHY": (6, 7)}),
    )
    assert not passed
    assert "SYSTEM_UNHEALTHY fired at 6.0s, expected never" in summary


@pytest.mark.parametrize(
    ("tl", "reason"),
    [
        (None, "insufficient evidence: no Prometheus in this run"),
        (
            AlertTimeline({}, 1.0, 10.0, WALL_T0, error="Prometheus did not answer"),
            "insufficient evidence: Prometheus did not answer",
        ),
    ],
)
def test_no_evidence_is_a_failure(tl: AlertTimeline | None, reason: str) -> None:
    """Without Prometheus's answer the verdict is FAIL, never PASS."""
    passed, summary = check(PrometheusAlertsChecker(fire=[ALERT]), tl)
    assert not passed
    assert summary == reason


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="fire"):
        PrometheusAlertsChecker()
    with pytest.raises(ValueError, match="lists of alert names"):
        PrometheusAlertsChecker(fire=ALERT)


def test_timeline_from_alerts_keeps_firing_samples_in_history_time() -> None:
    """Pending samples are ignored; times are relative to the run's start."""
    series = [
        ({"alertname": ALERT, "alertstate": "pending"}, [(WALL_T0 + 4, 1.0)]),
        ({"alertname": ALERT, "alertstate": "firing", "instance": "a"}, [(WALL_T0 + 5, 1.0)]),
        ({"alertname": ALERT, "alertstate": "firing", "instance": "b"}, [(WALL_T0 + 6, 1.0)]),
    ]
    tl = timeline_from_alerts(series, wall_t0=WALL_T0, step_s=1.0, observed_until_wall=WALL_T0 + 30)
    assert tl.firing == {ALERT: (5.0, 6.0)}
    assert tl.observed_until == 30.0


def scenario_data(**changes: object) -> dict[str, object]:
    """A minimal scenario table with `prometheus_alerts` and the Prometheus stack option."""
    raw: dict[str, object] = {
        "name": "p",
        "duration_s": 10,
        "faults": [{"at_s": 2, "fault": "redis-down", "duration_s": 3}],
        "stack": {"prometheus": True},
        "expect": {"prometheus_alerts": {"fire": [ALERT]}},
    }
    raw.update(changes)
    return raw


def test_a_scenario_with_prometheus_alerts_parses_into_the_checker() -> None:
    """The catalogue entry builds a PrometheusAlertsChecker with the given names."""
    [checker] = [
        c
        for c in parse_scenario(scenario_data()).checkers()
        if isinstance(c, PrometheusAlertsChecker)
    ]
    assert list(checker.fire) == [ALERT]


def test_prometheus_alerts_without_prometheus_is_refused_up_front() -> None:
    """Nothing starts: the one-line error says which option is missing."""
    with pytest.raises(ScenarioError, match=r"prometheus_alerts needs stack = \{ prometheus"):
        parse_scenario(scenario_data(stack={}))


def test_bad_prometheus_alerts_options_are_refused_up_front() -> None:
    with pytest.raises(ScenarioError, match="bad expectation"):
        parse_scenario(scenario_data(expect={"prometheus_alerts": {"fire": ALERT}}))
    with pytest.raises(ScenarioError, match="bad expectation"):
        parse_scenario(scenario_data(expect={"prometheus_alerts": {"fyre": [ALERT]}}))


def test_alerts_are_read_for_this_runs_targets_only() -> None:
    """The ALERTS query names this run's instances (regex-escaped), so an alert an earlier
    run left firing on the same Prometheus does not count."""
    from scenarios.run.prometheus import instances_selector

    selector = instances_selector(["http://127.0.0.1:4000", "http://127.0.0.1:4001/"])
    assert selector == 'ALERTS{instance=~"127\\\\.0\\\\.0\\\\.1:4000|127\\\\.0\\\\.0\\\\.1:4001"}'
