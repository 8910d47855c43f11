"""Run phases derived from fault windows: baseline, fault, between, recovery.

- baseline: before the first fault starts (the whole run when there is no fault);
- fault: inside any window (a window never healed lasts to the end of the run);
- recovery: after the last window ended (only when every window was healed);
- between: after a window healed and before the next one started.
An operation belongs to the phase of its start time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from scenarios.history import FaultWindow

Phase = Literal["baseline", "fault", "between", "recovery"]
PHASES: tuple[Phase, ...] = ("baseline", "fault", "between", "recovery")


def phase_of(t: float, windows: Sequence[FaultWindow]) -> Phase:
    """The phase that time `t` falls in."""
    if not windows or t < min(w.start for w in windows):
        return "baseline"
    if any(w.contains(t) for w in windows):
        return "fault"
    ends = [w.end for w in windows]
    if all(e is not None for e in ends) and t >= max(e for e in ends if e is not None):
        return "recovery"
    return "between"


def phase_spans(windows: Sequence[FaultWindow], duration: float) -> dict[Phase, float]:
    """How many seconds of [0, duration] each phase covers."""
    spans: dict[Phase, float] = dict.fromkeys(PHASES, 0.0)
    if not windows:
        spans["baseline"] = max(duration, 0.0)
        return spans
    intervals = sorted(
        (min(w.start, duration), min(duration if w.end is None else w.end, duration))
        for w in windows
    )
    spans["baseline"] = max(intervals[0][0], 0.0)
    covered = 0.0
    cur_start, cur_end = intervals[0]
    for start, end in intervals[1:]:
        if start > cur_end:
            covered += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    covered += cur_end - cur_start
    spans["fault"] = covered
    if all(w.end is not None for w in windows):
        last_end = max(end for _, end in intervals)
        spans["recovery"] = max(duration - last_end, 0.0)
    spans["between"] = max(duration - spans["baseline"] - spans["fault"] - spans["recovery"], 0.0)
    return spans
