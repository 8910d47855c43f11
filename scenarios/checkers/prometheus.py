"""`prometheus_alerts`: Prometheus's own record of which alerts fired when, against the
fault windows of the history.

The runner (with a Prometheus in the stack) reads the `ALERTS` series over the run from
Prometheus's query API after healing and hands them over as `Truth.alerts`, an
`AlertTimeline` in history time. For each alert in `fire`, the checker requires:

- not firing before the first fault (an alert that is always on proves nothing);
- firing at least once from a fault's start to `lag_s` after its end (Prometheus sees a
  change one scrape plus one evaluation late);
- for the alerts in `resolve` (by default all of `fire`): not firing at the end of the
  observation, and its last firing no later than `resolve_within_s` after the last fault
  ended. An alert over a long window (e.g. failures in the last minute) can be left out of
  `resolve`: its resolution is then proven by the promtool rule tests, and the scenario
  does not wait a window's length for it.

Each alert in `quiet` must never fire during the run. Without a timeline the verdict is a
failure ("no evidence"), never a pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from scenarios.checkers.base import CheckResult, Truth
from scenarios.history import JSON, FaultWindow, History

__all__ = ["AlertTimeline", "PrometheusAlertsChecker", "timeline_from_alerts"]


@dataclass(frozen=True)
class AlertTimeline:
    """When each alert was firing (any instance), from Prometheus, in history time (s)."""

    firing: Mapping[str, tuple[float, ...]]
    """alertname -> the evaluation times (history time) at which it was firing."""
    step_s: float
    """The spacing of those times (the query step)."""
    observed_until: float
    """The history time of the last evaluation looked at."""
    wall_t0: float
    """The unix time of history time 0 (to ask Prometheus about a moment of the run)."""
    error: str | None = None
    """Why the timeline is missing or partial (Prometheus did not answer...)."""
    waited_s: float = 0.0
    """How long the runner waited after healing for the expected alerts to resolve."""

    def first(
        self, alert: str, start: float = float("-inf"), end: float = float("inf")
    ) -> float | None:
        """The first firing time of `alert` in [start, end], or None."""
        return next((t for t in self.firing.get(alert, ()) if start <= t <= end), None)

    def last(self, alert: str) -> float | None:
        times = self.firing.get(alert, ())
        return times[-1] if times else None


def timeline_from_alerts(
    series: Iterable[tuple[Mapping[str, str], Sequence[tuple[float, float]]]],
    *,
    wall_t0: float,
    step_s: float,
    observed_until_wall: float,
) -> AlertTimeline:
    """An `AlertTimeline` from `ALERTS` series (labels, [(unix time, value)]) as a range
    query returns them; only `alertstate="firing"` samples count."""
    firing: dict[str, set[float]] = {}
    for labels, samples in series:
        if labels.get("alertstate") != "firing":
            continue
        times = firing.setdefault(str(labels.get("alertname", "")), set())
        times.update(round(t - wall_t0, 3) for t, value in samples if value == 1)
    return AlertTimeline(
        firing={name: tuple(sorted(times)) for name, times in firing.items() if times},
        step_s=step_s,
        observed_until=round(observed_until_wall - wall_t0, 3),
        wall_t0=wall_t0,
    )


@dataclass(frozen=True)
class PrometheusAlertsChecker:
    """The expected alerts fired during the faults and resolved after (see module doc)."""

    fire: Sequence[str] = ()
    quiet: Sequence[str] = ()
    resolve: Sequence[str] | None = None
    """The alerts of `fire` that must also resolve in the run (None: all of them)."""
    lag_s: float = 5.0
    resolve_within_s: float = 90.0
    name: str = field(default="prometheus_alerts", init=False)

    def __post_init__(self) -> None:
        if not self.fire and not self.quiet:
            raise ValueError("prometheus_alerts needs `fire` and/or `quiet` alert names")
        if self.lag_s < 0 or self.resolve_within_s <= 0:
            raise ValueError("lag_s must be >= 0 and resolve_within_s > 0")
        if self.resolve is not None and not set(self.resolve) <= set(self.fire):
            raise ValueError("resolve must name alerts of fire")
        for names in (self.fire, self.quiet, self.resolve or ()):
            if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
                raise ValueError("fire and quiet must be lists of alert names")

    @property
    def thresholds(self) -> dict[str, JSON]:
        return {
            "fire": list(self.fire),
            "quiet": list(self.quiet),
            "resolve": list(self.must_resolve),
            "lag_s": self.lag_s,
            "resolve_within_s": self.resolve_within_s,
        }

    @property
    def must_resolve(self) -> tuple[str, ...]:
        """The alerts that must resolve within the run."""
        return tuple(self.fire if self.resolve is None else self.resolve)

    def check(self, history: History, truth: Truth) -> CheckResult:
        timeline = truth.alerts
        if timeline is None or timeline.error is not None:
            why = timeline.error if timeline is not None else "no Prometheus in this run"
            return self._result(False, f"insufficient evidence: {why}", {})
        windows = [w for w in history.fault_windows()]
        if self.fire and not windows:
            return self._result(False, "insufficient evidence: no fault was injected", {})
        problems: list[str] = []
        details: dict[str, JSON] = {
            "wall_t0": timeline.wall_t0,
            "observed_until_s": timeline.observed_until,
            "waited_for_resolution_s": round(timeline.waited_s, 1),
            "firing": {
                name: _spans(times, timeline.step_s) for name, times in timeline.firing.items()
            },
        }
        for alert in self.fire:
            problems.extend(self._expected(alert, timeline, windows))
        for alert in self.quiet:
            first = timeline.first(alert)
            if first is not None:
                problems.append(f"{alert} fired at {first:.1f}s, expected never")
        if problems:
            return self._result(False, "; ".join(problems), details)
        fired = ", ".join(
            f"{a} at {timeline.first(a):.1f}s"
            + (
                f", resolved by {self._resolved_at(a, timeline):.1f}s"
                if a in self.must_resolve
                else ""
            )
            for a in self.fire
        )
        quiet = f"; quiet: {', '.join(self.quiet)}" if self.quiet else ""
        return self._result(True, f"fired during the fault: {fired}{quiet}", details)

    def _expected(
        self, alert: str, timeline: AlertTimeline, windows: Sequence[FaultWindow]
    ) -> list[str]:
        first_fault = min(w.start for w in windows)
        last_end = max(w.end if w.end is not None else timeline.observed_until for w in windows)
        before = timeline.first(alert, end=first_fault)
        if before is not None:
            return [f"{alert} was already firing at {before:.1f}s, before the first fault"]
        during = [
            timeline.first(alert, w.start, (w.end if w.end is not None else last_end) + self.lag_s)
            for w in windows
        ]
        if all(t is None for t in during):
            return [
                f"{alert} never fired during the fault "
                f"(fault {first_fault:.1f}s-{last_end:.1f}s, lag {self.lag_s:g}s)"
            ]
        if alert not in self.must_resolve:
            return []
        last = timeline.last(alert)
        assert last is not None
        if last >= timeline.observed_until - 1.5 * timeline.step_s:
            return [
                f"{alert} still firing at the end of the observation "
                f"({timeline.observed_until - last_end:.1f}s after healing)"
            ]
        if last > last_end + self.resolve_within_s:
            return [
                f"{alert} resolved only {last - last_end:.1f}s after healing "
                f"(allowed {self.resolve_within_s:g}s)"
            ]
        return []

    @staticmethod
    def _resolved_at(alert: str, timeline: AlertTimeline) -> float:
        last = timeline.last(alert)
        return (last if last is not None else 0.0) + timeline.step_s

    def _result(self, passed: bool, summary: str, details: dict[str, JSON]) -> CheckResult:
        return CheckResult(self.name, passed, summary, details, self.thresholds)


def _spans(times: Sequence[float], step_s: float) -> list[list[float]]:
    """Consecutive firing times merged into [start, end] spans (for the report)."""
    spans: list[list[float]] = []
    for t in times:
        if spans and t - spans[-1][1] <= step_s * 1.5:
            spans[-1][1] = t
        else:
            spans.append([t, t])
    return spans
