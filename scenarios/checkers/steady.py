"""Steady state before the first fault: without it, the run proves nothing (INVALID).

Like a failed steady-state hypothesis in chaostoolkit: when the baseline (operations and
health polls completed before the first fault started) holds errors, or a health poll
that did not say HEALTHY, or too few operations, the faults' effects cannot be told
from the target's own trouble, and the scenario's verdict is INVALID (exit 1), whatever
the other checkers say. A run without faults is all baseline.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from scenarios.checkers.base import MAX_SAMPLES, CheckResult, Truth
from scenarios.checkers.evidence import DEFAULT_MIN_EVIDENCE
from scenarios.checkers.health import status_of
from scenarios.history import JSON, History, Op

STEADY_STATE = "steady-state"


@dataclass(frozen=True)
class SteadyStateChecker:
    """The baseline's errors (at most `max_errors`), health (HEALTHY) and evidence."""

    max_errors: int = 0
    min_evidence: int = DEFAULT_MIN_EVIDENCE
    health_f: str = "health"
    name: str = STEADY_STATE

    def check(self, history: History, truth: Truth) -> CheckResult:
        first = min((w.start for w in history.fault_windows()), default=float("inf"))
        errors: list[Op] = []
        unhealthy: list[Op] = []
        ops = polls = 0
        for op in history.ops():
            done = op.end if op.end is not None else op.start
            if done >= first:
                continue
            if op.f == self.health_f:
                polls += 1
                if status_of(op.response) != "HEALTHY":
                    unhealthy.append(op)
                continue
            ops += 1
            if op.outcome != "ok":  # the workload's requests are valid: a 422 too
                errors.append(op)
        problems = []
        if len(errors) > self.max_errors:
            kinds = Counter(f"{op.f} {op.status or op.outcome}" for op in errors)
            top = ", ".join(f"{n} {k}" for k, n in kinds.most_common(3))
            problems.append(f"{len(errors)} errors before the first fault ({top})")
        if unhealthy:
            seen = Counter(
                str(status_of(op.response) or op.error or op.outcome) for op in unhealthy
            )
            top = ", ".join(f"{n} {k}" for k, n in seen.most_common(3))
            problems.append(
                f"{len(unhealthy)} health polls not HEALTHY before the first fault ({top})"
            )
        if polls == 0:
            problems.append("no health poll before the first fault")
        if ops < self.min_evidence:
            problems.append(
                f"insufficient evidence: {ops} operations in baseline (minimum {self.min_evidence})"
            )
        details: dict[str, JSON] = {
            "baseline_end": None if first == float("inf") else first,
            "operations": ops,
            "errors": len(errors),
            "health_polls": polls,
            "unhealthy_polls": len(unhealthy),
            "problems": problems,
            "samples": [
                {
                    "t": op.start,
                    "f": op.f,
                    "status": op.status,
                    "outcome": op.outcome,
                    "error": op.error,
                    "health": status_of(op.response) if op.f == self.health_f else None,
                }
                for op in (errors + unhealthy)[:MAX_SAMPLES]
            ],
        }
        summary = (
            "INVALID: baseline not steady: " + "; ".join(problems)
            if problems
            else f"baseline steady: {ops} operations, no error, {polls} polls HEALTHY"
        )
        return CheckResult(
            self.name,
            not problems,
            summary,
            details,
            {"max_errors": self.max_errors, "min_evidence": self.min_evidence, "health": "HEALTHY"},
        )
