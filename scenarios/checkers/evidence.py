"""Evidence minimums: a checker that judges a phase must have seen enough of it.

The segments of a run are its baseline (before the first fault), each fault window on
its own (numbered in start order, named) and the recovery (after the last heal). A fault
of the target process itself (`target-sigkill`) is not a segment: nothing can answer
while it is down. A checker counts the operations it judges in each segment; fewer than
its minimum is a failure with the reason "insufficient evidence: N <what> in <segment>",
never a pass. Segments shorter than `MIN_SEGMENT_S` are not judged for evidence.

The minimum is demanded of the time the target could answer: a segment that overlaps the
target's own outage (`target_down`: its fault window, until it answered again) needs the
minimum in proportion to the rest of it, and none when less than `MIN_SEGMENT_S` is left
(a Redis outage during a target restart holds no evidence to demand).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from scenarios.history import FaultWindow, History

DEFAULT_MIN_EVIDENCE = 20
MIN_SEGMENT_S = 0.5
"""A segment shorter than this (e.g. a fault whose recorded window is a few ms: applying
it took the time) holds too little time to demand evidence in; it is not judged."""
UNANSWERABLE_TARGETS = frozenset({"target"})
KILL_EDGE_SLACK_S = 0.5
"""The start edge of a process fault is recorded once the kill was carried out: calls cut
by it end (unknown, reset) just before the recorded edge."""


@dataclass(frozen=True)
class Segment:
    """A stretch of the run judged on its own: [start, end)."""

    label: str
    start: float
    end: float
    down_s: float = 0.0
    """How much of it the target process itself was down (`target_down`)."""

    def contains(self, t: float) -> bool:
        return self.start <= t < self.end

    @property
    def answerable_s(self) -> float:
        """How much of it the target could answer in."""
        return max(self.end - self.start - self.down_s, 0.0)

    def required(self, minimum: int) -> int:
        """The evidence minimum for this segment: `minimum` in proportion to the time the
        target could answer; 0 when less than `MIN_SEGMENT_S` of it was answerable."""
        length = self.end - self.start
        if self.answerable_s < MIN_SEGMENT_S or length <= 0:
            return 0
        return math.ceil(minimum * self.answerable_s / length - 1e-9)


def target_down(history: History) -> list[tuple[float, float]]:
    """Spans when the target process was down: its fault window (from just before its
    recorded start), until the first answer after the window ended (the restart)."""
    spans = []
    for w in history.fault_windows():
        if w.target not in UNANSWERABLE_TARGETS:
            continue
        end = w.end if w.end is not None else history.duration
        answered = [op.end for op in history.ops() if op.outcome == "ok" and op.start >= end]
        restarted = min((t for t in answered if t is not None), default=end)
        spans.append((w.start - KILL_EDGE_SLACK_S, restarted))
    return spans


def _overlap_s(start: float, end: float, spans: Sequence[tuple[float, float]]) -> float:
    """Seconds of [start, end) covered by the (possibly overlapping) spans."""
    covered, reach = 0.0, start
    for a, b in sorted(spans):
        a, b = max(a, reach), min(b, end)
        if b > a:
            covered += b - a
            reach = b
    return covered


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
    down = target_down(history)
    if not down:
        return out
    return [replace(s, down_s=_overlap_s(s.start, s.end, down)) for s in out]


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
    out = []
    for i, seg in enumerate(where):
        required = seg.required(minimum)
        if counts[i] < required and seg.end - seg.start >= MIN_SEGMENT_S:
            scaled = f", {seg.down_s:.1f} s of it with the target down" if seg.down_s else ""
            out.append(
                f"insufficient evidence: {counts[i]} {what} in {seg.label} "
                f"(minimum {required}{scaled})"
            )
    return out
