"""The report's per-window breaker table: per dependency, fault window and instance.

Rows come from the breaker check's details (`instances` -> `windows`): when the breaker
was first seen open after the window started, when it was first seen closed after the
heal (run seconds), and the verdict of that window on that instance (the check's
problems for it, or "ok"). An instance that never reported the state gets one row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from scenarios.checkers.base import CheckResult
from scenarios.history import JSON


@dataclass(frozen=True)
class BreakerRow:
    """One fault window of one dependency, as one instance's breaker lived it."""

    dependency: str
    window: str
    instance: str
    start: float
    """The window's start (run seconds): the rows' order."""
    opened_at: float | None
    closed_at: float | None
    verdict: str
    ok: bool


def breaker_rows(checks: tuple[CheckResult, ...]) -> list[BreakerRow]:
    """Every breaker check's windows, per instance and dependency, in time order."""
    rows: list[BreakerRow] = []
    for check in checks:
        instances = check.details.get("instances")
        if check.checker != "breaker" or not isinstance(instances, Mapping):
            continue
        targets = check.thresholds.get("targets")
        default = str(targets[0]) if isinstance(targets, list) and targets else "redis"
        for name, report in instances.items():
            instance, _, dep = str(name).partition("/")
            if not isinstance(report, Mapping):
                continue
            windows = report.get("windows")
            if not windows or not isinstance(windows, list):
                rows.append(
                    BreakerRow(
                        dep or default, "-", instance, 0.0, None, None, "no state seen", False
                    )
                )
                continue
            for w in windows:
                if isinstance(w, Mapping):
                    rows.append(_row(dep or default, instance, w))
    return sorted(rows, key=lambda r: (r.dependency, r.start, r.instance))


def _row(dependency: str, instance: str, w: Mapping[str, JSON]) -> BreakerRow:
    problems = w.get("problems")
    found = [str(p) for p in problems] if isinstance(problems, list) else []
    return BreakerRow(
        dependency,
        f"{w.get('window')} ({_at(w.get('start'))}-{_at(w.get('end'))})",
        instance,
        float(start) if isinstance(start := w.get("start"), int | float) else 0.0,
        _plus(w.get("start"), w.get("time_to_open_s")),
        _plus(w.get("end"), w.get("time_to_close_s")),
        "; ".join(found) if found else "ok",
        not found,
    )


def _plus(edge: JSON, delta: JSON) -> float | None:
    if isinstance(edge, int | float) and isinstance(delta, int | float):
        return float(edge) + float(delta)
    return None


def _at(value: JSON) -> str:
    return f"{float(value):.1f}s" if isinstance(value, int | float) else "?"
