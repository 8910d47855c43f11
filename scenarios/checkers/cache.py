"""Cache availability (reads keep answering) and staleness (reads see recent writes).

Staleness: writes carry a per-key increasing integer version `v` in their request value
(`{"v": n, ...}`, or nested one level as `{"value": {"v": n}}`), and reads return the
value with that `v` (the contract's `GET /cache/{key}` wraps it in `"value"`). A read of
key k that started at t and returned version v is stale when a write of k with a version
w > v had completed ok before t - bound_s; its staleness is t minus the earliest such
completion. Reads without a version (404 misses included) are ignored, so a read that
misses after a write is not counted: deletes and TTL expiry make misses legitimate.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter, defaultdict
from dataclasses import dataclass

from scenarios.checkers.base import MAX_SAMPLES, CheckResult, Truth
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
    name: str = "cache-availability"

    def check(self, history: History, truth: Truth) -> CheckResult:
        """Count the failed reads, inside and outside the fault windows."""
        reads = history.ops_for(*self.fs)
        failed = [op for op in reads if read_failed(op)]
        windows = history.fault_windows()
        by_phase = Counter(phase_of(op.start, windows) for op in failed)
        misses = sum(1 for op in reads if op.status == 404)
        rate = len(failed) / len(reads) if reads else 0.0
        passed = len(failed) <= self.max_failed_reads
        details: dict[str, JSON] = {
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
        summary = (
            f"{len(failed)} of {len(reads)} reads failed (max {self.max_failed_reads}): {verdict}"
        )
        return CheckResult(
            self.name, passed, summary, details, {"max_failed_reads": self.max_failed_reads}
        )


@dataclass(frozen=True)
class StalenessChecker:
    """Fails when a read returns a version older than a write completed bound_s before."""

    bound_s: float
    read_fs: tuple[str, ...] = READ_FS
    write_fs: tuple[str, ...] = WRITE_FS
    name: str = "staleness"

    def check(self, history: History, truth: Truth) -> CheckResult:
        """Find reads that returned a value older than an acknowledged write."""
        newer = _newer_write_index(history.ops_for(*self.write_fs))
        checked = 0
        stale: list[tuple[float, Op, int]] = []
        for op in history.ops_for(*self.read_fs):
            v = version_of(op.response) if op.outcome == "ok" else None
            if v is None or op.key is None or op.key not in newer:
                continue
            checked += 1
            earliest = _earliest_newer_completion(newer[op.key], v)
            if earliest is not None and op.start - earliest > self.bound_s:
                stale.append((op.start - earliest, op, v))
        stale.sort(key=lambda s: -s[0])
        marked = sum(
            1
            for _, op, _ in stale
            if isinstance(op.response, dict) and op.response.get("source") == "stale"
        )
        worst = stale[0][0] if stale else 0.0
        details: dict[str, JSON] = {
            "reads_checked": checked,
            "stale": len(stale),
            "worst_staleness_s": worst,
            "stale_marked_by_target": marked,
            "samples": [
                {
                    "t": op.start,
                    "f": op.f,
                    "key": op.key,
                    "read_version": v,
                    "staleness_s": age,
                    "source": _source(op.response),
                }
                for age, op, v in stale[:MAX_SAMPLES]
            ],
        }
        summary = (
            f"{len(stale)} stale reads of {checked} (worst {worst:.3f}s > {self.bound_s}s)"
            if stale
            else f"no read older than {self.bound_s}s among {checked} versioned reads"
        )
        return CheckResult(self.name, not stale, summary, details, {"bound_s": self.bound_s})


def _newer_write_index(writes: tuple[Op, ...]) -> dict[str, tuple[list[int], list[float]]]:
    """Per key: ok write versions ascending, and for each position the earliest completion
    among the writes from that position on (so: among all versions >= that one)."""
    by_key: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for op in writes:
        v = version_of(op.request)
        if op.outcome == "ok" and op.end is not None and op.key is not None and v is not None:
            by_key[op.key].append((v, op.end))
    index: dict[str, tuple[list[int], list[float]]] = {}
    for key, pairs in by_key.items():
        pairs.sort()
        suffix_min = [0.0] * len(pairs)
        best = float("inf")
        for i in range(len(pairs) - 1, -1, -1):
            best = min(best, pairs[i][1])
            suffix_min[i] = best
        index[key] = ([v for v, _ in pairs], suffix_min)
    return index


def _earliest_newer_completion(entry: tuple[list[int], list[float]], v: int) -> float | None:
    versions, suffix_min = entry
    i = bisect_right(versions, v)
    return suffix_min[i] if i < len(versions) else None


def _source(response: JSON) -> JSON:
    return response.get("source") if isinstance(response, dict) else None
