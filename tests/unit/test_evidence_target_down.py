"""Evidence minimums over the time the target could answer: a segment overlapping the
target's own outage (a SIGKILL until it answered again) needs the minimum in proportion
to the rest of it, none when nothing is left; and a schedule's run keeps a whole tail
after a killed process restarted."""

from __future__ import annotations

from scenarios.checkers.evidence import segments, shortfalls, target_down
from scenarios.faults import FaultSpec
from scenarios.history import FaultWindow
from scenarios.run.generate.model import RESTART_S, TAIL_S, GeneratedSchedule
from scenarios.run.scenario import ScheduledFault
from scenarios.run.schedules import property_scenario
from tests.unit.test_checkers import Synth

KILL = FaultWindow("target-sigkill", "target", 4.0, 9.0, "sigkill")


def reads(s: Synth, start: float, end: float, every: float = 0.1) -> list[float]:
    """One answered read every `every` s in [start, end); their start times."""
    times = []
    t = start
    while t < end - 1e-9:
        s.op("cache_get", t, t + 0.01, key="k", status=404)
        times.append(t)
        t += every
    return times


def test_a_window_inside_the_target_outage_demands_no_evidence() -> None:
    """A Redis outage from 5 s to 8 s while the target is down (4-9 s, answering again
    at 9 s): nothing could answer, so no minimum; the same window with the target up and
    no reads is insufficient evidence."""
    s = Synth()
    times = reads(s, 0.0, 3.5) + reads(s, 9.0, 15.0)
    redis = FaultWindow("redis-down", "redis", 5.0, 8.0, "down")
    history = s.history(KILL, redis)
    assert target_down(history) == [(3.5, 9.01)]  # its first answer after the window
    assert shortfalls(times, segments(history), 20, "reads") == []
    alone = s.history(redis)
    assert shortfalls(times, segments(alone), 20, "reads") == [
        "insufficient evidence: 0 reads in fault window 1 (redis-down) (minimum 20)"
    ]


def test_a_window_half_overlapping_the_target_outage_needs_half_the_minimum() -> None:
    """A Redis outage from 7 s to 11 s, the target down until 9 s: 2 of its 4 s could
    answer, so 10 reads are needed there; 8 are insufficient (the reason says why)."""
    redis = FaultWindow("redis-down", "redis", 7.0, 11.0, "down")
    for every, expected in ((0.2, []), (0.25, ["8 reads"])):
        s = Synth()
        times = reads(s, 0.0, 3.5) + reads(s, 9.0, 11.0, every) + reads(s, 11.0, 16.0)
        found = shortfalls(times, segments(s.history(KILL, redis)), 20, "reads")
        assert [f.split(": ", 1)[1].split(" in ")[0] for f in found] == expected, found
        if found:
            assert found[0].endswith("(minimum 10, 2.0 s of it with the target down)")


def test_a_schedule_ending_in_a_sigkill_keeps_a_tail_after_the_restart() -> None:
    """The run lasts until the killed process may have restarted (`RESTART_S`), plus the
    tail; the replayed scenario has the same length."""
    kill = ScheduledFault(8.0, 5.0, FaultSpec("sigkill", "target"))
    down = ScheduledFault(8.0, 5.0, FaultSpec("down", "redis"))
    assert GeneratedSchedule((down,)).duration_s == 8.0 + 5.0 + TAIL_S
    schedule = GeneratedSchedule((down, kill))
    assert schedule.duration_s == 8.0 + 5.0 + RESTART_S + TAIL_S
    assert property_scenario(schedule).duration_s == schedule.duration_s
