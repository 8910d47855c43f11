"""Evidence minimums: a checker that judges a phase must have seen enough of it.

The segments of a run are its baseline (before the first fault), each fault window on
its own (numbered in start order, named) and the recovery (after the last heal). A fault
of the target process itself (`target-sigkill`) is not a segment: nothing can answer
while it is down. A checker counts the operations it judges in each segment; fewer than
its minimum is a failure with the reason "insufficient evidence: N <what> in <segment>",
never a pass. Segments shorter than `MIN_SEGMENT_S` are not judged for evidence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scenarios.history import FaultWindow, History

DEFAULT_MIN_EVIDENCE = 20
MIN_SEGMENT_S = 0.5
"""A segment shorter than this (e.g. a fault whose recorded window is a few ms: applying
it took the time) holds too little time to demand evidence in; it is not judged."""
UNANSWERABLE_TARGETS = frozenset({"target"})


@dataclass(frozen=True)
class Segment:
    """A stretch of the run judged on its own: [start, end)."""

    label: str
    start: float
    end: float

    def contains(self, t: float) -> bool:
        return self.start <= t < self.end


def segments(history: History, *, baseline: bool = True, recovery: bool = True) -> list[Segment]:
    """Baseline, each fault window (not the target's own), recovery (when all healed)."""
    windows = history.fault_windows()
    duration = history.duration
    out: list[Segment] = []
    first = min((w.start for w in windows), default=duration)
    if baseline:
        out.append(Segment("baseline", 0.0, first))
    out.extend(window_segments(windows, duration))
    ends = [w.end for w in windows]
    if recovery and windows and all(e is not None for e in ends):
        out.append(Segment("recovery", max(e for e in ends if e is not None), duration + 1e-9))
    return out


def window_segments(windows: Sequence[FaultWindow], duration: float) -> list[Segment]:
    """One segment per fault window, labelled "fault window N (name)"."""
    return [
        Segment(f"fault window {n} ({w.name})", w.start, duration if w.end is None else w.end)
        for n, w in enumerate(windows, 1)
        if w.target not in UNANSWERABLE_TARGETS
    ]


def shortfalls(
    times: Iterable[float], where: Sequence[Segment], minimum: int, what: str
) -> list[str]:
    """ "insufficient evidence: N <what> in <segment>" for each segment under `minimum`."""
    counts = dict.fromkeys(range(len(where)), 0)
    for t in times:
        for i, seg in enumerate(where):
            if seg.contains(t):
                counts[i] += 1
    return [
        f"insufficient evidence: {counts[i]} {what} in {seg.label} (minimum {minimum})"
        for i, seg in enumerate(where)
        if counts[i] < minimum and seg.end - seg.start >= MIN_SEGMENT_S
    ]
