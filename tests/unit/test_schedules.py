"""Property-run machinery: generated schedules are valid, replayable, and failures shrink."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings

from scenarios.run.scenario import ScheduledFault, parse_schedule
from scenarios.run.schedules import (
    MAX_DURATION_S,
    PropertyRun,
    check_property,
    replay_command,
    schedule_json,
    schedules,
)


@settings(max_examples=200, deadline=None)
@given(faults=schedules())
def test_generated_schedules_are_valid_and_round_trip(faults: tuple[ScheduledFault, ...]) -> None:
    """Every generated schedule validates, and its JSON parses back to the same faults."""
    assert 1 <= len(faults) <= 2
    assert len({f.fault.target for f in faults}) == len(faults)
    assert all(0 < f.duration_s <= MAX_DURATION_S for f in faults)
    assert parse_schedule(schedule_json(faults)) == faults


def test_a_failure_shrinks_and_prints_the_replay_command(tmp_path: Path) -> None:
    """A property that fails whenever Redis is SIGKILLed shrinks to one minimal sigkill fault,
    and the error carries the exact `stormproof run --schedule` command."""
    seen: list[tuple[ScheduledFault, ...]] = []

    def runner(faults: tuple[ScheduledFault, ...], where: Path) -> tuple[bool, str]:
        seen.append(faults)
        broken = any(f.fault.kind == "sigkill" and f.fault.target == "redis" for f in faults)
        return not broken, "audit: 3 acknowledged events lost"

    with pytest.raises(AssertionError) as info:
        check_property(PropertyRun(200, 1, tmp_path), runner)
    message = str(info.value)
    assert "audit: 3 acknowledged events lost" in message
    command = message.split("replay: ", 1)[1].strip()
    assert command.startswith("stormproof run --quick --schedule ")
    minimal = parse_schedule(command.split("--schedule ", 1)[1].split(" --seed")[0].strip("'"))
    assert len(minimal) == 1
    assert minimal[0].fault.kind == "sigkill" and minimal[0].fault.target == "redis"
    assert minimal[0].at_s == 1.0 and minimal[0].duration_s == 0.5  # shrunk to the bounds
    assert len(seen) > 1


def test_replay_command_is_shell_quoted() -> None:
    """The printed command survives a shell: the JSON is one quoted argument."""
    faults = parse_schedule('[{"at_s": 1, "fault": "redis-down", "duration_s": 2}]')
    command = replay_command(faults, 7)
    assert command.endswith("--seed 7")
    assert "'[" in command and "]'" in command
