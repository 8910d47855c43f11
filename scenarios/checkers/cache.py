"""Cache availability (reads keep answering) and the versions staleness reads.

Writes carry a per-key increasing integer version `v` in their request value
(`{"v": n, ...}`, or nested one level as `{"value": {"v": n}}`), and reads return the
value with that `v` (the contract's `GET /cache/{key}` wraps it in `"value"`); the
staleness checker (`checkers/staleness.py`) compares them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from scenarios.checkers.base import MAX_SAMPLES, CheckResult, Truth
from scenarios.checkers.evidence import DEFAULT_MIN_EVIDENCE, segments, shortfalls
from scenarios.checkers.phases import phase_of
from scenarios.history import JSON, FaultWindow, History, Op

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
    """A read failed unless it answered: a 404 miss is an answer, a 5xx is not, and
    neither is a 200 without a value (no integer `v`: no write sends that)."""
    if op.status == 404:
        return False
    if op.outcome != "ok" or (op.status is not None and op.status >= 500):
        return True
    return version_of(op.response) is None


def _reason(op: Op) -> str:
    if op.outcome == "ok" and op.status is not None and op.status < 300:
        return "no value"
    if op.status is not None and op.status >= 500:
        return f"http {op.status}"
    if op.outcome == "info":
        return "unknown (info)"
    return f"fail {op.status}" if op.status is not None else "fail"


def written_miss_pairs(history: History, reads: Sequence[Op]) -> list[tuple[Op, Op]]:
    """(read, write) pairs: a 404 read of a key whose last acknowledged change before the
    read was that write (`cache_put` / `beneficio_put`), with no write or delete of it
    concurrent with the read (overlapping it: such a change may take effect first)."""
    changes: dict[str, list[Op]] = defaultdict(list)
    for op in history.ops_for(*WRITE_FS, "cache_delete"):
        changes[f"{op.f.split('_', 1)[0]}:{op.key}"].append(op)
    out = []
    for op in reads:
        if op.status != 404:
            continue
        mine = changes.get(f"{op.f.split('_', 1)[0]}:{op.key}", [])
        read_end = op.end if op.end is not None else op.start
        if any(c.start < read_end and (c.end is None or c.end > op.start) for c in mine):
            continue  # a change concurrent with the read: either answer is right
        done = [c for c in mine if c.outcome == "ok" and c.end is not None and c.end < op.start]
        last = max(done, key=lambda c: c.end or 0.0) if done else None
        if last is not None and last.f != "cache_delete":
            out.append((op, last))
    return out


def written_misses(history: History, reads: Sequence[Op]) -> list[Op]:
    """The reads of `written_miss_pairs`."""
    return [read for read, _ in written_miss_pairs(history, reads)]


def previous_heal(t: float, windows: Sequence[FaultWindow]) -> float | None:
    """For a time inside fault windows: the latest heal of an earlier window on the same
    target as a window holding `t` (None: each is the first on its target).

    A cache's L1 answers an outage with what it held when the outage began; the reference
    empties L1 when it reconnects after an outage, so what a later outage of the same
    dependency can answer is only what was written after that heal."""
    heals = [
        e.end
        for w in windows
        if w.contains(t)
        for e in windows
        if e.target == w.target and e.end is not None and e.end <= w.start
    ]
    return max(heals, default=None)


def answered_from_l2(op: Op) -> bool:
    """A read answered by the shared cache (the contract's `"source": "l2"`)."""
    return op.status == 200 and isinstance(op.response, dict) and op.response.get("source") == "l2"


def l1_emptied_at(read: Op, windows: Sequence[FaultWindow], reads: Sequence[Op]) -> float | None:
    """When, as far as the history shows, the reading instance last emptied its L1 before
    the outage the read falls in (None: never, L1 holds what was written since the start).

    The reference empties L1 when it reconnects after an outage: when its breaker closes,
    up to a reset timeout after the heal (`previous_heal`), and a write meanwhile reaches
    only L1 and is dropped with it. So the moment is the end of the instance's first read
    answered from L2 after the heal (its breaker had closed), or the start of the outage
    when none came before it."""
    heal = previous_heal(read.start, windows)
    if heal is None:
        return None
    began = min(w.start for w in windows if w.contains(read.start) and w.start >= heal)
    answered = (
        r.end
        for r in reads
        if r.end is not None
        and r.start >= heal
        and r.instance == read.instance
        and answered_from_l2(r)
    )
    return min(began, min(answered, default=began))


def answered_after_heal(read: Op, windows: Sequence[FaultWindow]) -> bool:
    """The read began inside an outage and answered after that outage's heal: the
    reconnect (which empties L1) is concurrent with it, so either answer is right."""
    end = read.end if read.end is not None else read.start
    return any(w.contains(read.start) and w.end is not None and w.end < end for w in windows)


def bounded_written_misses(
    history: History, reads: Sequence[Op], windows: Sequence[FaultWindow]
) -> list[Op]:
    """The written misses a `max_written_misses` bound judges: outside fault windows all
    of them; inside, only those of keys written after the reading instance last emptied
    its L1 (`l1_emptied_at`: the reconnect after the previous heal of the faulted
    dependency; the run start for its first outage), and not a read that answered after
    the heal (`answered_after_heal`)."""
    out = []
    for read, write in written_miss_pairs(history, reads):
        inside = phase_of(read.start, windows) == "fault"
        if inside and answered_after_heal(read, windows):
            continue
        emptied = l1_emptied_at(read, windows, reads) if inside else None
        if emptied is None or write.start >= emptied:
            out.append(read)
    return out


@dataclass(frozen=True)
class CacheAvailabilityChecker:
    """Fails when more than `max_failed_reads` reads failed (5xx, fail or info)."""

    max_failed_reads: int = 0
    fs: tuple[str, ...] = READ_FS
    min_evidence: int = DEFAULT_MIN_EVIDENCE
    """Reads needed in the baseline, each fault window and the recovery."""
    max_written_misses: Mapping[str, int] = field(default_factory=dict)
    """Per phase: 404s allowed for a key whose last acknowledged change was a write (no
    write or delete in flight); in the fault phase only keys written since the previous
    heal of the faulted dependency count (`bounded_written_misses`). Unbounded phases are
    only reported (a cache may drop an entry, e.g. the reference drops keys written during
    an outage after it heals)."""
    name: str = "cache-availability"

    def __post_init__(self) -> None:
        unknown = set(self.max_written_misses) - {"baseline", "fault", "between", "recovery"}
        if unknown:
            raise ValueError(f"cache_availability.max_written_misses: phases {sorted(unknown)}?")

    def check(self, history: History, truth: Truth) -> CheckResult:
        """Count the failed reads, inside and outside the fault windows."""
        reads = history.ops_for(*self.fs)
        failed = [op for op in reads if read_failed(op)]
        windows = history.fault_windows()
        by_phase = Counter(phase_of(op.start, windows) for op in failed)
        misses = sum(1 for op in reads if op.status == 404)
        rate = len(failed) / len(reads) if reads else 0.0
        evidence = shortfalls(
            (op.start for op in reads), segments(history), self.min_evidence, "reads"
        )
        lost: Counter[str] = Counter(
            phase_of(op.start, windows) for op in written_misses(history, reads)
        )
        judged: Counter[str] = Counter(
            phase_of(op.start, windows) for op in bounded_written_misses(history, reads, windows)
        )
        over = [
            f"{judged[phase]} misses of written keys in the {phase} phase (max {limit})"
            for phase, limit in self.max_written_misses.items()
            if judged[phase] > limit
        ]
        passed = len(failed) <= self.max_failed_reads and not evidence and not over
        details: dict[str, JSON] = {
            "insufficient_evidence": evidence,
            "written_misses_by_phase": dict(lost),
            "written_misses_judged_by_phase": dict(judged),
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
                *over,
                f"{len(failed)} of {len(reads)} reads failed "
                f"(max {self.max_failed_reads}): {verdict}",
            ]
        )
        return CheckResult(
            self.name,
            passed,
            summary,
            details,
            {
                "max_failed_reads": self.max_failed_reads,
                "min_evidence": self.min_evidence,
                "max_written_misses": dict(self.max_written_misses),
            },
        )
