"""The dashboards agree with what happened: `/resilience` and `/metrics` against the history.

Reads the `observe` samples (scenarios/observe.py: `/resilience`, `/health` and `/metrics`
read back to back, per instance, every half second) and checks:

- file-path acknowledgements: every audit event acknowledged on the `file` path before a
  sample is counted in that sample's `auditoria.fileBackups` (acks <= counter);
- breaker state: `/resilience`'s `redis.circuitState` matches `/health`'s `circuit`; one
  disagreeing sample is a transition between the two reads, two in a row are a fault;
- Redis failure counter (`stormproof_redis_failures_total`): rises across each Redis fault
  window, and does not move across a PostgreSQL fault window that no Redis fault overlaps.

No sample at all, or no sample on both sides of a fault window, is insufficient evidence.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scenarios.checkers.base import CheckResult, Truth
from scenarios.checkers.breaker import circuit_of
from scenarios.history import FaultWindow, History, Op
from scenarios.observe import OBSERVE_F

REDIS_FAILURES = "stormproof_redis_failures_total"


@dataclass(frozen=True)
class MetricsChecker:
    """`/resilience` and `/metrics` consistent with the history (see the module doc)."""

    file_backups: bool = True
    breaker: bool = True
    redis_failures: bool = True

    @property
    def name(self) -> str:
        """The expectation's name."""
        return "metrics"

    def check(self, history: History, truth: Truth) -> CheckResult:
        """The verdict: every inconsistency found, or why there is too little to judge."""
        thresholds = {
            "file_backups": self.file_backups,
            "breaker": self.breaker,
            "redis_failures": self.redis_failures,
        }
        observed = [
            op
            for op in history.ops_for(OBSERVE_F)
            if op.outcome == "ok" and isinstance(op.response, dict)
        ]
        by_instance: dict[str | None, list[Op]] = defaultdict(list)
        for op in sorted(observed, key=lambda o: o.start):
            by_instance[op.instance].append(op)
        details: dict[str, Any] = {"samples": len(observed)}
        if not observed:
            return CheckResult(
                self.name, False, "insufficient evidence: no dashboard sample", details, thresholds
            )
        problems: list[str] = []
        acks = _file_acks(history)
        for instance, ops in by_instance.items():
            if self.file_backups:
                problems.extend(_file_backup_problems(instance, ops, acks.get(instance, [])))
            if self.breaker:
                problems.extend(_breaker_problems(instance, ops))
            if self.redis_failures:
                problems.extend(_redis_problems(instance, ops, history.fault_windows()))
        details["file_acks"] = sum(len(v) for v in acks.values())
        if problems:
            return CheckResult(self.name, False, "; ".join(problems[:6]), details, thresholds)
        return CheckResult(
            self.name,
            True,
            f"{len(observed)} samples agree with the history",
            details,
            thresholds,
        )


def _file_acks(history: History) -> dict[str | None, list[float]]:
    acks: dict[str | None, list[float]] = defaultdict(list)
    for op in history.ops_for("audit"):
        response = op.response
        if op.outcome == "ok" and isinstance(response, dict) and response.get("path") == "file":
            acks[op.instance].append(op.end if op.end is not None else op.start)
    return acks


def _file_backup_problems(
    instance: str | None, ops: Sequence[Op], acks: Sequence[float]
) -> list[str]:
    if acks and not any(op.start > max(acks) for op in ops):
        return [f"{instance}: insufficient evidence: no sample after the last file-path ack"]
    for op in ops:
        counted = _number(op.response, "resilience", "auditoria", "fileBackups")
        before = sum(t < op.start for t in acks)
        if counted is None:
            return [f"{instance}: /resilience has no auditoria.fileBackups"]
        if counted < before:
            return [
                f"{instance}: {before} file-path acknowledgements by {op.start:.2f}s "
                f"but auditoria.fileBackups = {counted:g}"
            ]
    return []


def _breaker_problems(instance: str | None, ops: Sequence[Op]) -> list[str]:
    previous: tuple[str | None, str | None] | None = None
    for op in ops:
        pair = (circuit_of(op.response.get("resilience")), circuit_of(op.response.get("health")))
        if pair[0] is None or pair[1] is None:
            return [f"{instance}: breaker state missing from /resilience or /health"]
        if pair[0] != pair[1] and previous is not None and previous[0] != previous[1]:
            return [
                f"{instance}: /resilience says {pair[0]} but /health says {pair[1]} "
                f"(two samples in a row, at {op.start:.2f}s)"
            ]
        previous = pair
    return []


def _redis_problems(
    instance: str | None, ops: Sequence[Op], windows: Sequence[FaultWindow]
) -> list[str]:
    problems = []
    redis_windows = [w for w in windows if w.target == "redis"]
    for window in windows:
        end = window.end if window.end is not None else float("inf")
        before = [op for op in ops if (op.end or op.start) <= window.start]
        after = [op for op in ops if op.start >= end]
        if window.target == "redis":
            after = after or [op for op in ops if op.start > window.start]
        elif window.target != "postgres" or any(_overlap(window, r) for r in redis_windows):
            continue
        if not before or not after:
            problems.append(f"{instance}: insufficient evidence: no sample around {window.name}")
            continue
        low = _number(before[-1].response, "metrics", REDIS_FAILURES)
        high = _number(
            after[0].response if window.target == "postgres" else after[-1].response,
            "metrics",
            REDIS_FAILURES,
        )
        if low is None or high is None:
            problems.append(f"{instance}: /metrics has no {REDIS_FAILURES}")
        elif window.target == "redis" and high <= low:
            problems.append(
                f"{instance}: {REDIS_FAILURES} did not rise during {window.name} (stayed {low:g})"
            )
        elif window.target == "postgres" and high != low:
            problems.append(
                f"{instance}: {REDIS_FAILURES} moved during {window.name} ({low:g} -> {high:g}) "
                "with Redis healthy"
            )
    return problems


def _overlap(a: FaultWindow, b: FaultWindow) -> bool:
    a_end = a.end if a.end is not None else float("inf")
    b_end = b.end if b.end is not None else float("inf")
    return a.start < b_end and b.start < a_end


def _number(document: Any, *path: str) -> float | None:
    value = document
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
