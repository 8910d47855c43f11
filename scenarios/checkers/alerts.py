"""The alerts an operator receives: the right ones fire in time, resolve in time, and none
fires while nothing is wrong.

Reads the `alert` operations the observer recorded (scenarios/observe.py) from the
harness's webhook receiver, and the fault windows:

- nothing fires before the first fault (the baseline is quiet);
- each alert in `fire` sends `firing` within `within_s` of the first fault's start;
- each sends `resolved` within `resolve_within_s` of the last fault's end, and that is its
  last word (on every instance that fired it).

No fault window, or no alert received at all when some are expected, is insufficient
evidence: a FAIL, never a PASS.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from scenarios.checkers.base import CheckResult, Truth, samples
from scenarios.history import JSON, History, Op
from scenarios.observe import ALERT_F


@dataclass(frozen=True)
class AlertsChecker:
    """Expected alerts fire within `within_s` of the fault and resolve within
    `resolve_within_s` of healing; none during the baseline (`quiet_baseline`)."""

    fire: Sequence[str] = field(default_factory=tuple)
    within_s: float = 10.0
    resolve_within_s: float = 15.0
    quiet_baseline: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.fire, str) or not all(isinstance(n, str) for n in self.fire):
            raise ValueError("alerts.fire must be a list of alert names")
        if self.within_s <= 0 or self.resolve_within_s <= 0:
            raise ValueError("alerts: within_s and resolve_within_s must be positive")

    @property
    def name(self) -> str:
        """The expectation's name."""
        return "alerts"

    def check(self, history: History, truth: Truth) -> CheckResult:
        """The verdict; reasons name the alert, the instance and the times."""
        thresholds = {
            "fire": list(self.fire),
            "within_s": self.within_s,
            "resolve_within_s": self.resolve_within_s,
            "quiet_baseline": self.quiet_baseline,
        }
        windows = history.fault_windows()
        alerts = sorted(
            (op for op in history.ops_for(ALERT_F) if op.end is not None),
            key=lambda op: op.end or 0.0,
        )
        received = [f"{_t(op):.2f}s {op.key} {_state(op)} ({op.instance})" for op in alerts]
        details: dict[str, JSON] = {"received": samples(received, 50)}
        if not windows:
            return CheckResult(
                self.name, False, "insufficient evidence: no fault window", details, thresholds
            )
        first_start = min(w.start for w in windows)
        last_end = max(w.end if w.end is not None else history.duration for w in windows)
        problems: list[str] = []
        if self.quiet_baseline:
            early = [op for op in alerts if _t(op) < first_start and _state(op) == "firing"]
            problems.extend(
                f"{op.key} fired during the baseline at {_t(op):.2f}s" for op in early[:3]
            )
        for name in self.fire:
            problems.extend(self._one(name, alerts, first_start, last_end))
        details["fault_start_s"] = first_start
        details["healed_s"] = last_end
        if problems:
            return CheckResult(self.name, False, "; ".join(problems), details, thresholds)
        summary = f"{', '.join(self.fire) or 'no alert expected'}: fired and resolved in time" + (
            "; quiet baseline" if self.quiet_baseline else ""
        )
        return CheckResult(self.name, True, summary, details, thresholds)

    def _one(self, name: str, alerts: Sequence[Op], start: float, healed: float) -> list[str]:
        mine = [op for op in alerts if op.key == name]
        firing = [op for op in mine if _state(op) == "firing" and _t(op) >= start]
        if not firing:
            return [f"{name} never fired (after the fault at {start:.2f}s)"]
        problems = []
        fired_after = _t(firing[0]) - start
        if fired_after > self.within_s:
            problems.append(f"{name} fired {fired_after:.1f}s after the fault (> {self.within_s}s)")
        by_instance: dict[str | None, list[Op]] = defaultdict(list)
        for op in mine:
            by_instance[op.instance].append(op)
        for instance, ops in by_instance.items():
            last = ops[-1]
            if _state(last) != "resolved":
                problems.append(f"{name} never resolved on {instance} (healed at {healed:.2f}s)")
            elif _t(last) - healed > self.resolve_within_s:
                problems.append(
                    f"{name} resolved {_t(last) - healed:.1f}s after healing on {instance} "
                    f"(> {self.resolve_within_s}s)"
                )
        return problems


def _t(op: Op) -> float:
    return op.end if op.end is not None else op.start


def _state(op: Op) -> str:
    response = op.response
    return str(response.get("state", "")) if isinstance(response, dict) else ""
