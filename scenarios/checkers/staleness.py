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
every instance, or `<target>.<instance>` (e.g. `redis.i2`) for that instance's reads; a
replicated Redis node's proxy (`redis.peer`, `redis.n1`) is relevant to every instance.
A 404 miss is not judged here (see `cache_availability`). A 200 read is judged whole: it
must carry a value that some write sent (all of it, not just its `v`: a value with the
right version and other fields changed, or with no integer `v` at all, is
`never_written`). A write answered 5xx may have landed (its outcome is unknown to the
client), so reading its value is not `never_written`; a 4xx or a refused connection did not.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from scenarios.checkers.base import MAX_SAMPLES, CheckResult, Truth
from scenarios.checkers.cache import READ_FS, WRITE_FS, version_of
from scenarios.checkers.evidence import DEFAULT_MIN_EVIDENCE, Segment, segments, shortfalls
from scenarios.history import JSON, FaultWindow, History, Op

ALLOWED = "allowed"


_INSTANCE = re.compile(r"i[1-9][0-9]*")


@dataclass(frozen=True)
class Stale:
    """One read behind a newer acknowledged write."""

    op: Op
    version: int | None
    """The version read; None for a value without an integer `v`."""
    lag_s: float
    """Seconds since the clock of the newer write started (completion or heal)."""
    during_fault: bool
    kind: str = "stale"
    """stale (a newer write) | resurrected (a delete) | non_monotonic (a newer version
    this worker read before) | never_written (no write of this version was accepted)."""


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
    delete_fs: tuple[str, ...] = ("cache_delete",)
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
        write_ops = history.ops_for(*self.write_fs)
        writes = _writes_by_key(write_ops, history.ops_for(*self.delete_fs))
        tried = written_values(write_ops)
        windows = [] if self.bound_s is not None else list(history.fault_windows())
        checked = {"during_fault": 0, "after_heal": 0}
        behind: list[Stale] = []
        never: list[Stale] = []
        forgot: list[Stale] = []  # reads during a fault behind the instance's own change
        versioned: list[float] = []
        seen: dict[tuple[int, str], list[Write]] = defaultdict(list)
        for op in history.ops_for(*self.read_fs):
            if op.outcome != "ok" or op.status == 404 or op.key is None:
                continue
            v = version_of(op.response)
            during = any(w.contains(op.start) for w in windows if self._relevant(w, op.instance))
            key = key_of(op)
            if v is None:  # a 200 with no integer version: no write sent that
                never.append(Stale(op, None, 0.0, during, "never_written"))
                continue
            versioned.append(op.start)
            checked["during_fault" if during else "after_heal"] += 1
            sent = tried.get(key, {})
            if v not in sent or not _same_value(op, sent[v]):
                never.append(Stale(op, v, 0.0, during, "never_written"))
            clock, deleted = self._lag_clock(op, v, during, writes.get(key, []), windows)
            if clock is not None and clock < op.start:
                kind = "resurrected" if deleted else "stale"
                behind.append(Stale(op, v, op.start - clock, during, kind))
                if during:  # excused by the fault, unless it was this instance's own change
                    own_lag = _own_lag(op, v, writes.get(key, []))
                    if own_lag is not None and own_lag > self.after_bound:
                        forgot.append(Stale(op, v, own_lag, during, "own_change_lost"))
            else:  # not behind any write: behind what this worker saw before?
                mine = seen[(op.process, key)]
                clock, _ = self._lag_clock(op, v, during, mine, windows)
                if clock is not None and clock < op.start:
                    behind.append(Stale(op, v, op.start - clock, during, "non_monotonic"))
            if op.end is not None:
                seen[(op.process, key)].append(Write(v, op.end, op.instance))
        during_bound = self.during_bound
        late_during = [
            s for s in behind if s.during_fault and (during_bound is None or s.lag_s > during_bound)
        ]
        late_after = [s for s in behind if not s.during_fault and s.lag_s > self.after_bound]
        failing = late_after + never + ([] if during_bound is None else late_during)
        failing += forgot  # a kind of its own: never among the others
        judged = [g for g in segments(history) if g.label == "recovery"] or [
            Segment("the run", 0.0, history.duration + 1e-9)
        ]
        evidence = shortfalls(versioned, judged, self.min_evidence, "versioned reads")
        stale_after = [s for s in late_after if s.kind == "stale"]
        details: dict[str, JSON] = {
            "insufficient_evidence": evidence,
            "reads_checked": sum(checked.values()),
            "reads_during_fault": checked["during_fault"],
            "reads_after_heal": checked["after_heal"],
            "stale": len(failing),
            "stale_during_fault": _category(late_during, during_bound is None),
            "stale_after_heal": _category(stale_after, False),
            "resurrected": _category([s for s in late_after if s.kind == "resurrected"], False),
            "non_monotonic": _category([s for s in late_after if s.kind == "non_monotonic"], False),
            "never_written": _category(never, False),
            "own_change_lost": _category(forgot, False),
            "worst_staleness_s": max((s.lag_s for s in failing), default=0.0),
            "stale_marked_by_target": sum(1 for s in failing if _source(s.op) == "stale"),
            "samples": [_sample(s) for s in _worst(failing)],
        }
        return CheckResult(
            self.name,
            not failing and not evidence,
            "; ".join([*evidence, self._summary(late_during, late_after, never, forgot, checked)]),
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
    ) -> tuple[float | None, bool]:
        """When the read's lag starts: the earliest clock among the newer writes completed
        before it (and whether that write was a delete). A write's clock restarts at the
        heal of a window that could have kept its invalidation from the reader: one
        cutting off the writer's instance, or (for a read outside a window) the reader's
        own."""
        clock: float | None = None
        deleted = False
        for write in writes:
            if write.end >= read.start or (clock is not None and write.end >= clock):
                break
            if write.version <= version:
                continue
            excusing = [w for w in windows if self._excuses(w, write, read, during)]
            start = _clock(write.end, excusing, self.after_bound)
            if clock is None or start < clock:
                clock, deleted = start, write.deleted
        return clock, deleted

    def _excuses(self, window: FaultWindow, write: Write, read: Op, during: bool) -> bool:
        reader = self._relevant(window, read.instance)
        if during:  # the reader's own window makes it "during": judged apart
            return self._relevant(window, write.instance) and not reader
        return reader or self._relevant(window, write.instance)

    def _relevant(self, window: FaultWindow, instance: str | None) -> bool:
        base, _, rest = window.target.partition(".")
        # "redis.i2": instance 2's own proxy; "redis.peer", "redis.n1": a node of the
        # replicated Redis (scenarios/stack/replicated.py), in front of every instance
        only = rest if _INSTANCE.fullmatch(rest) else ""
        return base in self.targets and (not only or only == instance)

    def _summary(
        self,
        during: list[Stale],
        after: list[Stale],
        never: list[Stale],
        forgot: list[Stale],
        checked: dict[str, int],
    ) -> str:
        total = sum(checked.values())
        parts = []
        if never:
            parts.append(f"{len(never)} reads of a never-written version")
        if forgot:
            parts.append(
                f"{len(forgot)} reads during a fault behind the same instance's own "
                f"acknowledged write or delete (> {self.after_bound}s)"
            )
        if self.bound_s is not None:
            late = during + after
            if not late:
                return "; ".join(
                    [*parts, f"no read older than {self.bound_s}s among {total} versioned reads"]
                )
            worst = max(s.lag_s for s in late)
            parts.append(
                f"{len(late)} stale reads of {total} (worst {worst:.3f}s > {self.bound_s}s)"
            )
            return "; ".join(parts)
        stale = [s for s in after if s.kind == "stale"]
        if stale:
            worst = max(s.lag_s for s in stale)
            parts.append(
                f"after heal: {len(stale)} stale reads of {checked['after_heal']} "
                f"(worst {worst:.3f}s > {self.after_bound}s)"
            )
        else:
            parts.append(
                f"after heal: none older than {self.after_bound}s "
                f"among {checked['after_heal']} reads"
            )
        for kind, label in (("resurrected", "deleted keys came back"), ("non_monotonic", "")):
            found = [s for s in after if s.kind == kind]
            if found:
                text = label or "reads went back to an older version than the worker had seen"
                parts.append(f"{len(found)} {text} (> {self.after_bound}s)")
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


def _own_lag(read: Op, version: int, writes: Sequence[Write]) -> float | None:
    """Seconds since the reader's own instance acknowledged a newer write or a delete of
    the key (None: it did not). No fault excuses that: the instance holds its own change."""
    own = [
        w
        for w in writes
        if w.instance == read.instance and w.version > version and w.end < read.start
    ]
    return read.start - min(w.end for w in own) if own else None


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
        "kind": s.kind,
        "source": _source(s.op),
    }


def _source(op: Op) -> JSON:
    return op.response.get("source") if isinstance(op.response, dict) else None


@dataclass(frozen=True)
class Write:
    """An acknowledged write: its version, completion time and the instance it went to."""

    version: float
    end: float
    instance: str | None
    deleted: bool = False
    """A delete: `version` is just above the last version written before it."""


def key_of(op: Op) -> str:
    """The key in its namespace: `/cache/k` and `/beneficios/k` are different things."""
    return f"{op.f.split('_', 1)[0]}:{op.key}"


def _writes_by_key(writes: Sequence[Op], deletes: Sequence[Op]) -> dict[str, list[Write]]:
    """Per key, the ok writes with a version and the ok deletes, by completion time. A
    key is written by one worker at a time, so a delete supersedes every version whose
    write was invoked before it."""
    by_key: dict[str, list[Write]] = defaultdict(list)
    invoked: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for op in writes:
        v = version_of(op.request)
        if op.key is None or v is None:
            continue
        invoked[key_of(op)].append((op.start, v))
        if op.outcome == "ok" and op.end is not None:
            by_key[key_of(op)].append(Write(v, op.end, op.instance))
    for op in deletes:
        if op.outcome != "ok" or op.end is None or op.key is None:
            continue
        before = [v for t, v in invoked.get(key_of(op), ()) if t < op.start]
        by_key[key_of(op)].append(Write(max(before, default=0) + 0.5, op.end, op.instance, True))
    for items in by_key.values():
        items.sort(key=lambda w: w.end)
    return dict(by_key)


def written_values(writes: Sequence[Op]) -> dict[str, dict[int, JSON]]:
    """Per key and version, the request of a write that did not definitely fail: ok,
    unknown, or answered 5xx (it may have landed); not a 4xx or a refused connection."""
    out: dict[str, dict[int, JSON]] = defaultdict(dict)
    for op in writes:
        v = version_of(op.request)
        if op.key is None or v is None or _definitely_failed(op):
            continue
        out[key_of(op)][v] = op.request
    return dict(out)


def _definitely_failed(op: Op) -> bool:
    """The write did not happen: refused with a 4xx, or its connection was refused."""
    if op.outcome != "fail":
        return False
    return op.status is None or op.status < 500


# a beneficio read must carry these fields as its write sent them (the row adds its id);
# a cache read, the whole `value`
_BENEFICIO_FIELDS = ("nome", "valor", "v")


def _same_value(read: Op, request: JSON) -> bool:
    """The read's value is the one the write sent: a cache value whole, a beneficio's
    written fields (the row adds its id)."""
    response, namespace = read.response, read.f.split("_", 1)[0]
    if not isinstance(response, dict) or not isinstance(request, dict):
        return False
    if namespace != "beneficio":
        return response.get("value") == request.get("value")
    return all(response.get(name) == request.get(name) for name in _BENEFICIO_FIELDS)
