"""Health reported vs faults injected.

A `health` poll's status (response `"status"`, whatever the HTTP code) is checked when
its whole interval [start, end] lies inside a fault window at least `grace_s` after the
window started: it must be in `expect_during[target]`. With several windows active, the
key is their targets sorted and joined by "+" (e.g. "postgres+redis"); without such a
key, the union of each target's set is allowed. Windows of targets with no expectation
are not checked. A poll is in transition (not checked) when a window started less than
`grace_s` before it, or ended less than `grace_s` before it, or ends during it.

After the last window healed (+ `grace_s`), or from `grace_s` on when there was no
fault, and in the gaps between faults (a heal + `grace_s` to the next fault's start),
every poll must answer with a status in `expect_after`; a poll that got no status then
is a violation too, and so is a poll with no answer inside an expected window past its
grace (missing evidence, not skipped). Before the first fault the `steady-state` check
judges. Per instance, each expected window longer than `grace_s`, and the after-phase,
must hold at least one checked poll: a checker that saw nothing cannot pass.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from scenarios.checkers.base import MAX_SAMPLES, CheckResult, Truth
from scenarios.checkers.breaker import state_changes
from scenarios.history import JSON, FaultWindow, History, Op

DEFAULT_DURING: Mapping[str, AbstractSet[str]] = {
    "redis": frozenset({"DEGRADED"}),
    "postgres": frozenset({"UNHEALTHY"}),
    "postgres+redis": frozenset({"UNHEALTHY"}),
}


def status_of(response: JSON) -> str | None:
    """The overall status a health poll reported, upper-cased."""
    if isinstance(response, dict) and isinstance(response.get("status"), str):
        return str(response["status"]).strip().upper()
    return None


@dataclass(frozen=True)
class HealthChecker:
    """Fails when the reported health disagrees with the faults in force."""

    grace_s: float
    expect_during: Mapping[str, AbstractSet[str]] = field(default_factory=lambda: DEFAULT_DURING)
    expect_after: AbstractSet[str] = frozenset({"HEALTHY"})
    f: str = "health"
    name: str = "health"

    def allowed(self, targets: AbstractSet[str]) -> AbstractSet[str] | None:
        """The statuses allowed while `targets` are all faulted; None: not checked."""
        combined = "+".join(sorted(targets))
        if combined in self.expect_during:
            return self.expect_during[combined]
        sets = [self.expect_during[t] for t in sorted(targets) if t in self.expect_during]
        return frozenset().union(*sets) if sets else None

    def check(self, history: History, truth: Truth) -> CheckResult:
        """Check the /health statuses seen before, during and after the faults."""
        windows = history.fault_windows()
        after_from = _recovered_from(windows, self.grace_s)
        gaps = _gaps(windows, self.grace_s)
        polls = history.ops_for(self.f)
        instances = sorted({op.instance or "default" for op in polls})
        counts: Counter[str] = Counter()
        covered: set[tuple[str, int]] = set()
        checked_after: Counter[str] = Counter()
        violations: list[dict[str, JSON]] = []
        observed: list[tuple[float, str]] = []
        for op in polls:
            instance = op.instance or "default"
            status = status_of(op.response)
            if status is not None and op.end is not None:
                observed.append((op.end, status))
            if after_from is not None and op.start >= after_from:
                counts["checked_after"] += 1
                checked_after[instance] += 1
                if status not in self.expect_after:
                    violations.append(_violation(op, status, self.expect_after, "after"))
                continue
            end = op.end if op.end is not None else op.start
            if any(a <= op.start and end < b for a, b in gaps):
                counts["checked_between"] += 1
                if status not in self.expect_after:
                    violations.append(_violation(op, status, self.expect_after, "between"))
                continue
            if status is None and self._inside_after_grace(op, windows):
                # a poll with no answer inside a window is missing evidence, not skipped
                counts["unanswered_during"] += 1
                violations.append(_violation(op, None, frozenset({"an answer"}), "during"))
                continue
            verdict = self._during(op, status, windows)
            if verdict is None:
                counts["not_checked"] += 1
                continue
            active, allowed = verdict
            counts["checked_during"] += 1
            covered.update((instance, i) for i in active)
            if status not in allowed:
                violations.append(_violation(op, status, allowed, "during"))
        problems = self._coverage(windows, covered, after_from, checked_after, instances)
        observed.sort()
        details: dict[str, JSON] = {
            "checked_during": counts["checked_during"],
            "checked_between": counts["checked_between"],
            "checked_after": counts["checked_after"],
            "unanswered_during": counts["unanswered_during"],
            "not_checked": counts["not_checked"],
            "instances": instances,
            "violations": len(violations),
            "samples": violations[:MAX_SAMPLES],
            "coverage_problems": problems,
            "timeline": [[t, s] for t, s in state_changes(observed)],
            "recovery_checked": after_from is not None,
        }
        passed = not violations and not problems
        return CheckResult(
            self.name, passed, _summary(violations, problems, counts), details, self._thresholds()
        )

    def _inside_after_grace(self, op: Op, windows: Sequence[FaultWindow]) -> bool:
        """The poll lies inside an expected window, past its grace, before its heal."""
        end = op.end if op.end is not None else op.start
        return any(
            w.start + self.grace_s <= op.start
            and (w.end is None or end <= w.end)
            and self.allowed({w.target}) is not None
            for w in windows
        )

    def _during(
        self, op: Op, status: str | None, windows: Sequence[FaultWindow]
    ) -> tuple[list[int], AbstractSet[str]] | None:
        """(indexes of active windows, allowed statuses) if the poll is checked."""
        if op.end is None or status is None:
            return None
        relevant = [
            i
            for i, w in enumerate(windows)
            if w.start <= op.end and (w.end is None or w.end + self.grace_s > op.start)
        ]
        if not relevant:
            return None
        for i in relevant:
            w = windows[i]
            if w.start + self.grace_s > op.start or (w.end is not None and op.end > w.end):
                return None  # in transition
        allowed = self.allowed({windows[i].target for i in relevant})
        return None if allowed is None else (relevant, allowed)

    def _coverage(
        self,
        windows: Sequence[FaultWindow],
        covered: set[tuple[str, int]],
        after_from: float | None,
        checked_after: Counter[str],
        instances: Sequence[str],
    ) -> list[str]:
        problems = []
        prefix = len(instances) > 1
        for instance in instances:
            label = f"{instance}: " if prefix else ""
            for i, w in enumerate(windows):
                long_enough = w.end is None or w.end - w.start > self.grace_s
                expected = self.allowed({w.target}) is not None
                if expected and long_enough and (instance, i) not in covered:
                    problems.append(
                        f"{label}no health poll checked inside {w.name!r} "
                        f"after {self.grace_s}s grace"
                    )
            if after_from is not None and self.expect_after and not checked_after[instance]:
                problems.append(f"{label}no health poll from {after_from:.1f}s on (after recovery)")
        if not instances and (windows or after_from is not None):
            problems.append("no health poll at all")
        return problems

    def _thresholds(self) -> dict[str, JSON]:
        return {
            "grace_s": self.grace_s,
            "expect_during": {k: sorted(v) for k, v in self.expect_during.items()},
            "expect_after": sorted(self.expect_after),
        }


def _gaps(windows: Sequence[FaultWindow], grace_s: float) -> list[tuple[float, float]]:
    """Between faults: from a heal (+ grace) to the next fault's start, when nothing is
    active. The after-phase (after the last heal) is judged apart."""
    spans = sorted((w.start, w.end) for w in windows)
    gaps: list[tuple[float, float]] = []
    reach = float("-inf")
    for n, (_start, end) in enumerate(spans):
        if end is None:
            return gaps
        reach = max(reach, end)
        if n + 1 < len(spans) and spans[n + 1][0] > reach + grace_s:
            gaps.append((reach + grace_s, spans[n + 1][0]))
    return gaps


def _recovered_from(windows: Sequence[FaultWindow], grace_s: float) -> float | None:
    """When the after-phase starts: last heal + grace (grace with no fault); None if a
    fault was never healed."""
    ends = [w.end for w in windows]
    if any(e is None for e in ends):
        return None
    return max((e for e in ends if e is not None), default=0.0) + grace_s


def _violation(op: Op, status: str | None, allowed: AbstractSet[str], when: str) -> dict[str, JSON]:
    return {
        "t": op.start,
        "status": status,
        "allowed": sorted(allowed),
        "when": when,
        "instance": op.instance,
        "error": op.error,
    }


def _summary(violations: list[dict[str, JSON]], problems: list[str], counts: Counter[str]) -> str:
    checked = (
        counts["checked_during"]
        + counts["checked_between"]
        + counts["checked_after"]
        + counts["unanswered_during"]
    )
    if not violations and not problems:
        between = f", {counts['checked_between']} between" if counts["checked_between"] else ""
        return (
            f"health matched the faults in {checked} polls "
            f"({counts['checked_during']} during{between}, {counts['checked_after']} after)"
        )
    parts = []
    if violations:
        first = violations[0]
        parts.append(
            f"{len(violations)} of {checked} polls wrong, first at "
            f"{float(first['t']):.1f}s: {first['status']} not in {first['allowed']}"
        )
    return "; ".join(parts + problems)
