"""Staleness: reads see recent writes, judged relative to the faults that excuse them.

Writes carry a per-key increasing integer version `v` (see `cache.version_of`). A read of
key k that started at t and returned version v is behind when an ok write of k with a
version w > v had completed at some time c < t. How long it may stay behind depends on the
faults in force, so the expectation has two parts:

- `after_heal_s`: the guarantee. Outside a fault window, a read may lag a newer write by at
  most `after_heal_s`, counted from the write's completion or, when a relevant fault
  window began before that deadline (it could have stopped the invalidation), from the
  window's heal. An L1 kept after reconnecting fails this, however long the outage was.
- `during_fault`: reads that start inside a relevant window. `"allowed"` (a cut-off
  instance may serve its L1), or a number of seconds bounding their lag like the above.

The legacy form `bound_s` is an absolute bound everywhere (no fault excuses anything).
A window is relevant to a read when its target is one of `targets` (default: redis) for
every instance, or `<target>.<instance>` (e.g. `redis.i2`) for that instance's reads.
Reads without a version (404 misses included) are ignored here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from scenarios.checkers.base import MAX_SAMPLES, CheckResult, Truth
from scenarios.checkers.cache import READ_FS, WRITE_FS, version_of
from scenarios.checkers.evidence import DEFAULT_MIN_EVIDENCE, Segment, segments, shortfalls
from scenarios.history import JSON, FaultWindow, History, Op

ALLOWED = "allowed"


@dataclass(frozen=True)
class Stale:
    """One read behind a newer acknowledged write."""

    op: Op
    version: int
    lag_s: float
    """Seconds since the clock of the newer write started (completion or heal)."""
    during_fault: bool


@dataclass(frozen=True)
class StalenessChecker:
    """Stale reads during faults (allowed or bounded) and after healing (bounded)."""

    after_heal_s: float | None = None
    during_fault: str | float | None = None
    bound_s: float | None = None
    targets: tuple[str, ...] = ("redis",)
    min_evidence: int = DEFAULT_MIN_EVIDENCE
    """Versioned reads needed after the last heal (the whole run without faults)."""
    read_fs: tuple[str, ...] = READ_FS
    write_fs: tuple[str, ...] = WRITE_FS
    name: str = "staleness"

    def __post_init__(self) -> None:
        if (self.bound_s is None) == (self.after_heal_s is None):
            raise ValueError("staleness: give either bound_s, or after_heal_s (+ during_fault)")
        if self.bound_s is not None and self.during_fault is not None:
            raise ValueError("staleness: bound_s is absolute; use after_heal_s with during_fault")
        if isinstance(self.during_fault, str) and self.during_fault != ALLOWED:
            raise ValueError(f"staleness: during_fault is {ALLOWED!r} or a number of seconds")
        for value in (self.after_heal_s, self.bound_s, self.during_fault):
            if isinstance(value, bool) or (isinstance(value, int | float) and value < 0):
                raise ValueError("staleness: bounds must be non-negative numbers")

    @property
    def after_bound(self) -> float:
        return float(self.bound_s if self.bound_s is not None else self.after_heal_s or 0.0)

    @property
    def during_bound(self) -> float | None:
        """Seconds a read inside a fault may lag; None: any lag is allowed."""
        if self.bound_s is not None:
            return self.bound_s
        if self.during_fault is None:
            return self.after_bound
        return None if self.during_fault == ALLOWED else float(self.during_fault)

    def check(self, history: History, truth: Truth) -> CheckResult:
        writes = _writes_by_key(history.ops_for(*self.write_fs))
        windows = [] if self.bound_s is not None else list(history.fault_windows())
        checked = {"during_fault": 0, "after_heal": 0}
        behind: list[Stale] = []
        versioned: list[float] = []
        for op in history.ops_for(*self.read_fs):
            v = version_of(op.response) if op.outcome == "ok" else None
            if v is None or op.key is None:
                continue
            versioned.append(op.start)
            if op.key not in writes:
                continue
            during = any(w.contains(op.start) for w in windows if self._relevant(w, op.instance))
            checked["during_fault" if during else "after_heal"] += 1
            clock = self._lag_clock(op, v, during, writes[op.key], windows)
            if clock is not None and clock < op.start:
                behind.append(Stale(op, v, op.start - clock, during))
        during_bound = self.during_bound
        stale_during = [
            s for s in behind if s.during_fault and (during_bound is None or s.lag_s > during_bound)
        ]
        stale_after = [s for s in behind if not s.during_fault and s.lag_s > self.after_bound]
        failing = stale_after + ([] if during_bound is None else stale_during)
        judged = [g for g in segments(history) if g.label == "recovery"] or [
            Segment("the run", 0.0, history.duration + 1e-9)
        ]
        evidence = shortfalls(versioned, judged, self.min_evidence, "versioned reads")
        details: dict[str, JSON] = {
            "insufficient_evidence": evidence,
            "reads_checked": sum(checked.values()),
            "reads_during_fault": checked["during_fault"],
            "reads_after_heal": checked["after_heal"],
            "stale": len(failing),
            "stale_during_fault": _category(stale_during, during_bound is None),
            "stale_after_heal": _category(stale_after, False),
            "worst_staleness_s": max((s.lag_s for s in failing), default=0.0),
            "stale_marked_by_target": sum(1 for s in failing if _source(s.op) == "stale"),
            "samples": [_sample(s) for s in _worst(failing)],
        }
        return CheckResult(
            self.name,
            not failing and not evidence,
            "; ".join([*evidence, self._summary(stale_during, stale_after, checked)]),
            details,
            self._thresholds(),
        )

    def _lag_clock(
        self,
        read: Op,
        version: int,
        during: bool,
        writes: Sequence[Write],
        windows: Sequence[FaultWindow],
    ) -> float | None:
        """When the read's lag starts: the earliest clock among the newer writes completed
        before it. A write's clock restarts at the heal of a window that could have kept
        its invalidation from the reader: one cutting off the writer's instance, or (for
        a read outside a window) the reader's own."""
        clock: float | None = None
        for write in writes:
            if write.end >= read.start or (clock is not None and write.end >= clock):
                break
            if write.version <= version:
                continue
            excusing = [w for w in windows if self._excuses(w, write, read, during)]
            start = _clock(write.end, excusing, self.after_bound)
            clock = start if clock is None else min(clock, start)
        return clock

    def _excuses(self, window: FaultWindow, write: Write, read: Op, during: bool) -> bool:
        reader = self._relevant(window, read.instance)
        if during:  # the reader's own window makes it "during": judged apart
            return self._relevant(window, write.instance) and not reader
        return reader or self._relevant(window, write.instance)

    def _relevant(self, window: FaultWindow, instance: str | None) -> bool:
        base, _, only = window.target.partition(".")
        return base in self.targets and (not only or only == instance)

    def _summary(self, during: list[Stale], after: list[Stale], checked: dict[str, int]) -> str:
        total = sum(checked.values())
        if self.bound_s is not None:
            if not after and not during:
                return f"no read older than {self.bound_s}s among {total} versioned reads"
            worst = max(s.lag_s for s in during + after)
            return (
                f"{len(during) + len(after)} stale reads of {total} "
                f"(worst {worst:.3f}s > {self.bound_s}s)"
            )
        parts = []
        if after:
            worst = max(s.lag_s for s in after)
            parts.append(
                f"after heal: {len(after)} stale reads of {checked['after_heal']} "
                f"(worst {worst:.3f}s > {self.after_bound}s)"
            )
        else:
            parts.append(
                f"after heal: none older than {self.after_bound}s "
                f"among {checked['after_heal']} reads"
            )
        bound = self.during_bound
        verdict = "allowed" if bound is None else f"bound {bound}s"
        parts.append(
            f"during fault: {len(during)} stale of {checked['during_fault']} reads ({verdict})"
        )
        return "; ".join(parts)

    def _thresholds(self) -> dict[str, JSON]:
        if self.bound_s is not None:
            return {"bound_s": self.bound_s}
        return {
            "after_heal_s": self.after_heal_s,
            "during_fault": self.during_fault if self.during_fault is not None else "bounded",
            "targets": list(self.targets),
        }


def _clock(completed: float, windows: Sequence[FaultWindow], bound: float) -> float:
    """When the lag of a write completed at `completed` starts counting: a fault window
    that began before the propagation deadline (completed + bound) and healed after it
    started restarts the clock at its heal (a window never healed stops it for good)."""
    clock = completed
    for w in sorted(windows, key=lambda w: w.start):
        if w.start > clock + bound:
            break
        if w.end is None:
            return float("inf")
        clock = max(clock, w.end)
    return clock


def _category(stale: list[Stale], allowed: bool) -> dict[str, JSON]:
    return {
        "count": len(stale),
        "allowed": allowed,
        "worst_s": max((s.lag_s for s in stale), default=0.0),
        "samples": [_sample(s) for s in _worst(stale)],
    }


def _worst(stale: list[Stale]) -> list[Stale]:
    return sorted(stale, key=lambda s: -s.lag_s)[:MAX_SAMPLES]


def _sample(s: Stale) -> dict[str, JSON]:
    return {
        "t": s.op.start,
        "f": s.op.f,
        "key": s.op.key,
        "instance": s.op.instance,
        "read_version": s.version,
        "staleness_s": s.lag_s,
        "during_fault": s.during_fault,
        "source": _source(s.op),
    }


def _source(op: Op) -> JSON:
    return op.response.get("source") if isinstance(op.response, dict) else None


@dataclass(frozen=True)
class Write:
    """An acknowledged write: its version, completion time and the instance it went to."""

    version: int
    end: float
    instance: str | None


def _writes_by_key(writes: tuple[Op, ...]) -> dict[str, list[Write]]:
    """Per key, the ok writes with a version, by completion time."""
    by_key: dict[str, list[Write]] = defaultdict(list)
    for op in writes:
        v = version_of(op.request)
        if op.outcome == "ok" and op.end is not None and op.key is not None and v is not None:
            by_key[op.key].append(Write(v, op.end, op.instance))
    for items in by_key.values():
        items.sort(key=lambda w: w.end)
    return dict(by_key)
