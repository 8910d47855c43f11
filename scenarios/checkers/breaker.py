"""Breaker timeline: does the circuit open soon after a fault, and close after healing?

The state comes from polled `health` / `resilience` ops: the response's `"circuit"`, or
the seed's `{"redis": {"circuitState": ...}}`. An observation is dated at the poll's
completion (when the answer was in hand: conservative for "within" bounds). HALF_OPEN
counts as evidence of having opened (a breaker only gets there from OPEN). Each target
instance is checked on its own; the run passes when every instance does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scenarios.checkers.base import CheckResult, Truth
from scenarios.history import JSON, FaultWindow, History, Op

STATES: tuple[str, ...] = ("CLOSED", "HALF_OPEN", "OPEN")
OPENED: frozenset[str] = frozenset(("OPEN", "HALF_OPEN"))
POLL_FS: tuple[str, ...] = ("health", "resilience")
DEFAULT_INSTANCE = "default"
MAX_TIMELINE = 1000

Observation = tuple[float, str]


def circuit_of(response: JSON) -> str | None:
    """The breaker state a poll reported, normalised (e.g. "half-open" -> "HALF_OPEN")."""
    if not isinstance(response, dict):
        return None
    raw = response.get("circuit")
    if raw is None and isinstance(response.get("redis"), dict):
        raw = response["redis"].get("circuitState")
    if not isinstance(raw, str):
        return None
    state = raw.strip().upper().replace("-", "_")
    return state if state in STATES else None


def observations(ops: Iterable[Op]) -> dict[str, list[Observation]]:
    """Per instance, the (time, state) observations in time order."""
    by_instance: dict[str, list[Observation]] = defaultdict(list)
    for op in ops:
        state = circuit_of(op.response)
        if state is not None and op.end is not None:
            by_instance[op.instance or DEFAULT_INSTANCE].append((op.end, state))
    for obs in by_instance.values():
        obs.sort()
    return dict(by_instance)


def state_changes(obs: Sequence[Observation]) -> list[Observation]:
    """Only the observations where the state differs from the previous one."""
    changes: list[Observation] = []
    for t, state in obs:
        if not changes or changes[-1][1] != state:
            changes.append((t, state))
    return changes


@dataclass(frozen=True)
class BreakerTimelineChecker:
    """Time from the first `target` fault to OPEN, and from its healing to CLOSED."""

    open_within_s: float | None = None
    close_within_s: float | None = None
    target: str = "redis"
    fs: tuple[str, ...] = POLL_FS
    name: str = "breaker"

    def check(self, history: History, truth: Truth) -> CheckResult:
        """Check when the breaker opened and closed against the fault windows."""
        thresholds: dict[str, JSON] = {
            "open_within_s": self.open_within_s,
            "close_within_s": self.close_within_s,
            "target": self.target,
        }
        bounded = self.open_within_s is not None or self.close_within_s is not None
        by_instance = observations(history.ops_for(*self.fs))
        window = next((w for w in history.fault_windows() if w.target == self.target), None)
        violations: list[str] = []
        per_instance: dict[str, JSON] = {}
        if window is None and bounded:
            violations.append(f"no {self.target!r} fault window was recorded")
        if not by_instance and bounded:
            violations.append("no breaker state was observed")
        for instance, obs in sorted(by_instance.items()):
            report, problems = self._instance(obs, window)
            per_instance[instance] = report
            prefix = f"{instance}: " if len(by_instance) > 1 else ""
            violations.extend(prefix + p for p in problems)
        details: dict[str, JSON] = {
            "window": window.to_json() if window else None,
            "instances": per_instance,
            "violations": violations,
        }
        return CheckResult(
            self.name, not violations, _summary(violations, per_instance), details, thresholds
        )

    def _instance(
        self, obs: list[Observation], window: FaultWindow | None
    ) -> tuple[dict[str, JSON], list[str]]:
        changes = state_changes(obs)
        report: dict[str, JSON] = {
            "observations": len(obs),
            "timeline": [[t, s] for t, s in changes[:MAX_TIMELINE]],
            "time_to_open_s": None,
            "time_to_close_s": None,
        }
        if window is None:
            return report, []
        problems: list[str] = []
        opened_at = next((t for t, s in obs if t >= window.start and s in OPENED), None)
        if opened_at is not None:
            report["time_to_open_s"] = opened_at - window.start
        if self.open_within_s is not None:
            if opened_at is None:
                problems.append("the breaker never opened")
            elif opened_at - window.start > self.open_within_s:
                problems.append(
                    f"opened after {opened_at - window.start:.2f}s > {self.open_within_s}s"
                )
        if window.end is None:
            if self.close_within_s is not None:
                problems.append(f"fault {window.name!r} was never healed")
            return report, problems
        after = max(window.end, opened_at if opened_at is not None else window.end)
        closed_at = next((t for t, s in obs if t >= after and s == "CLOSED"), None)
        if closed_at is not None:
            report["time_to_close_s"] = closed_at - window.end
        if self.close_within_s is not None:
            if closed_at is None:
                problems.append("the breaker did not close after healing")
            elif closed_at - window.end > self.close_within_s:
                problems.append(
                    f"closed {closed_at - window.end:.2f}s after healing > {self.close_within_s}s"
                )
        return report, problems


def _summary(violations: list[str], per_instance: dict[str, JSON]) -> str:
    if violations:
        return "; ".join(violations)
    parts = []
    for instance, report in per_instance.items():
        if isinstance(report, dict):
            prefix = "" if instance == DEFAULT_INSTANCE else f"{instance}: "
            parts.append(
                f"{prefix}opened {_secs(report['time_to_open_s'])} after the fault, "
                f"closed {_secs(report['time_to_close_s'])} after healing"
            )
    return "; ".join(parts) if parts else "breaker state not observed"


def _secs(value: JSON) -> str:
    return "-" if value is None else f"{float(value):.2f}s"
