"""Cache availability (reads keep answering) and the versions staleness reads.

Writes carry a per-key increasing integer version `v` in their request value
(`{"v": n, ...}`, or nested one level as `{"value": {"v": n}}`), and reads return the
value with that `v` (the contract's `GET /cache/{key}` wraps it in `"value"`); the
staleness checker (`checkers/staleness.py`) compares them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from scenarios.checkers.base import MAX_SAMPLES, CheckResult, Truth
from scenarios.checkers.evidence import DEFAULT_MIN_EVIDENCE, segments, shortfalls
from scenarios.checkers.phases import phase_of
from scenarios.history import JSON, History, Op

READ_FS: tuple[str, ...] = ("cache_get", "beneficio_get")
WRITE_FS: tuple[str, ...] = ("cache_put", "beneficio_put")


def version_of(value: JSON) -> int | None:
    """The integer `v` of a value, at its top level or inside its `"value"`."""
    if not isinstance(value, dict):
        return None
    v = value.get("v")
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    return version_of(value["value"]) if isinstance(value.get("value"), dict) else None


def read_failed(op: Op) -> bool:
    """A read failed unless it answered: a 404 miss is an answer, a 5xx is not."""
    if op.status == 404:
        return False
    return op.outcome != "ok" or (op.status is not None and op.status >= 500)


def _reason(op: Op) -> str:
    if op.status is not None and op.status >= 500:
        return f"http {op.status}"
    if op.outcome == "info":
        return "unknown (info)"
    return f"fail {op.status}" if op.status is not None else "fail"


@dataclass(frozen=True)
class CacheAvailabilityChecker:
    """Fails when more than `max_failed_reads` reads failed (5xx, fail or info)."""

    max_failed_reads: int = 0
    fs: tuple[str, ...] = READ_FS
    min_evidence: int = DEFAULT_MIN_EVIDENCE
    """Reads needed in the baseline, each fault window and the recovery."""
    name: str = "cache-availability"

    def check(self, history: History, truth: Truth) -> CheckResult:
        reads = history.ops_for(*self.fs)
        failed = [op for op in reads if read_failed(op)]
        windows = history.fault_windows()
        by_phase = Counter(phase_of(op.start, windows) for op in failed)
        misses = sum(1 for op in reads if op.status == 404)
        rate = len(failed) / len(reads) if reads else 0.0
        evidence = shortfalls(
            (op.start for op in reads), segments(history), self.min_evidence, "reads"
        )
        passed = len(failed) <= self.max_failed_reads and not evidence
        details: dict[str, JSON] = {
            "insufficient_evidence": evidence,
            "reads": len(reads),
            "failed": len(failed),
            "failure_rate": rate,
            "misses_404": misses,
            "failed_by_reason": dict(Counter(_reason(op) for op in failed)),
            "failed_by_phase": dict(by_phase),
            "samples": [
                {
                    "t": op.start,
                    "f": op.f,
                    "key": op.key,
                    "status": op.status,
                    "outcome": op.outcome,
                    "error": op.error,
                }
                for op in failed[:MAX_SAMPLES]
            ],
        }
        verdict = "ok" if passed else "too many"
        summary = "; ".join(
            [
                *evidence,
                f"{len(failed)} of {len(reads)} reads failed "
                f"(max {self.max_failed_reads}): {verdict}",
            ]
        )
        return CheckResult(
            self.name,
            passed,
            summary,
            details,
            {"max_failed_reads": self.max_failed_reads, "min_evidence": self.min_evidence},
        )
