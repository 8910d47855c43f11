"""Breaker timeline: does the circuit open soon after each fault, and close after healing?

The state comes from polled `health` / `resilience` ops: `"circuits": {"redis",
"database"}`, else the response's `"circuit"` or the seed's `{"redis": {"circuitState":
...}}` (Redis). An observation is dated at the poll's completion (when the answer was in
hand: conservative for "within" bounds). HALF_OPEN counts as evidence of having opened (a
breaker only gets there from OPEN). Every fault window of the dependency is judged (the
opening is looked for until the next window starts), on every instance that took part
in the run; one that never reports the state fails. The run passes when all do.
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


def dependency_circuit(response: JSON, dependency: str) -> str | None:
    """The state of `dependency`'s breaker in a poll: `circuits.<name>` (the database
    breaker is `circuits.database`), else for Redis the top-level `circuit`."""
    if isinstance(response, dict) and isinstance(response.get("circuits"), dict):
        name = "database" if dependency == "postgres" else dependency
        raw = response["circuits"].get(name)
        if isinstance(raw, str):
            state = raw.strip().upper().replace("-", "_")
            if state in STATES:
                return state
    return circuit_of(response) if dependency == "redis" else None


@dataclass(frozen=True)
class BreakerTimelineChecker:
    """Per dependency (`targets`: redis, postgres = the database breaker), every fault
    window of it, every instance: time from the window's start to OPEN, and from its
    heal to CLOSED. An instance that never reports the breaker's state fails."""

    open_within_s: float | None = None
    close_within_s: float | None = None
    target: str = "redis"
    targets: tuple[str, ...] = ()
    fs: tuple[str, ...] = POLL_FS
    name: str = "breaker"

    @property
    def dependencies(self) -> tuple[str, ...]:
        return self.targets or (self.target,)

    def check(self, history: History, truth: Truth) -> CheckResult:
        """Check when the breaker opened and closed against the fault windows."""
        thresholds: dict[str, JSON] = {
            "open_within_s": self.open_within_s,
            "close_within_s": self.close_within_s,
            "targets": list(self.dependencies),
        }
        bounded = self.open_within_s is not None or self.close_within_s is not None
        polls = history.ops_for(*self.fs)
        instances = sorted({op.instance or DEFAULT_INSTANCE for op in history.ops()})
        violations: list[str] = []
        per_instance: dict[str, JSON] = {}
        all_windows: dict[str, JSON] = {}
        many = len(self.dependencies) > 1
        for dep in self.dependencies:
            windows = [w for w in history.fault_windows() if w.target == dep]
            all_windows[dep] = [w.to_json() for w in windows]
            by_instance = _observations(polls, dep)
            if not windows and bounded:
                violations.append(f"no {dep!r} fault window was recorded")
            if not by_instance and bounded:
                violations.append(f"no {dep} breaker state was observed")
                continue
            for instance in instances if bounded else sorted(by_instance):
                obs = by_instance.get(instance, [])
                report, problems = self._instance(obs, windows)
                per_instance[f"{instance}/{dep}" if many else instance] = report
                if not obs:
                    problems = [f"never reported the {dep} breaker's state"]
                prefix = (f"{instance}: " if len(instances) > 1 else "") + (
                    f"{dep}: " if many else ""
                )
                violations.extend(prefix + p for p in problems)
        details: dict[str, JSON] = {
            "window": next(iter(all_windows.get(self.dependencies[0]) or []), None),
            "windows": all_windows,
            "instances": per_instance,
            "violations": violations,
        }
        return CheckResult(
            self.name, not violations, _summary(violations, per_instance), details, thresholds
        )

    def _instance(
        self, obs: list[Observation], windows: Sequence[FaultWindow]
    ) -> tuple[dict[str, JSON], list[str]]:
        changes = state_changes(obs)
        report: dict[str, JSON] = {
            "observations": len(obs),
            "timeline": [[t, s] for t, s in changes[:MAX_TIMELINE]],
            "time_to_open_s": None,
            "time_to_close_s": None,
            "windows": [],
        }
        problems: list[str] = []
        rows: list[JSON] = []
        for n, window in enumerate(windows):
            until = windows[n + 1].start if n + 1 < len(windows) else float("inf")
            row, found = self._window(obs, window, until)
            rows.append(row)
            label = f"window {n + 1} ({window.name}): " if len(windows) > 1 else ""
            problems.extend(label + p for p in found)
        report["windows"] = rows
        if rows and isinstance(rows[0], dict):
            report["time_to_open_s"] = rows[0]["time_to_open_s"]
            report["time_to_close_s"] = rows[0]["time_to_close_s"]
        return report, problems

    def _window(
        self, obs: list[Observation], window: FaultWindow, until: float
    ) -> tuple[dict[str, JSON], list[str]]:
        row: dict[str, JSON] = {
            "window": window.name,
            "start": window.start,
            "end": window.end,
            "time_to_open_s": None,
            "time_to_close_s": None,
        }
        problems: list[str] = []
        opened_at = next((t for t, s in obs if window.start <= t < until and s in OPENED), None)
        if opened_at is not None:
            row["time_to_open_s"] = opened_at - window.start
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
            row["problems"] = list(problems)
            return row, problems
        after = max(window.end, opened_at if opened_at is not None else window.end)
        closed_at = next((t for t, s in obs if after <= t < until and s == "CLOSED"), None)
        if closed_at is not None:
            row["time_to_close_s"] = closed_at - window.end
        if self.close_within_s is not None:
            if closed_at is None:
                problems.append("the breaker did not close after healing")
            elif closed_at - window.end > self.close_within_s:
                problems.append(
                    f"closed {closed_at - window.end:.2f}s after healing > {self.close_within_s}s"
                )
        row["problems"] = list(problems)  # this window's verdict (the report's table)
        return row, problems


def _observations(ops: Iterable[Op], dependency: str) -> dict[str, list[Observation]]:
    by_instance: dict[str, list[Observation]] = defaultdict(list)
    for op in ops:
        state = dependency_circuit(op.response, dependency)
        if state is not None and op.end is not None:
            by_instance[op.instance or DEFAULT_INSTANCE].append((op.end, state))
    for obs in by_instance.values():
        obs.sort()
    return dict(by_instance)


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
