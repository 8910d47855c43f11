"""The generator's model: schedules are valid, the space covers every kind, replays
round-trip through JSON and the command line, and failures shrink the intended way."""

from __future__ import annotations

import itertools
import random
import shlex
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from scenarios.cli import build_parser
from scenarios.faults import STREAMS, FaultError, FaultSpec
from scenarios.run.cli import resolve
from scenarios.run.generate.model import (
    RESTART_S,
    RESTARTED,
    GeneratedSchedule,
    resource,
    separate,
)
from scenarios.run.generate.space import ScheduleSpace, schedules
from scenarios.run.scenario import ScheduledFault, parse_schedule
from scenarios.run.schedules import parse_duration, property_scenario

SPACE = ScheduleSpace()


@settings(max_examples=200, deadline=None, database=None)
@given(schedule=schedules(SPACE, seed=5))
def test_generated_schedules_are_valid(schedule: GeneratedSchedule) -> None:
    """Every schedule: 1..6 faults inside the run, 1..3 instances, no two faults on one
    resource at once (at least the gap apart), every fault spec valid."""
    assert schedule.problems() == []
    assert 1 <= len(schedule.faults) <= SPACE.max_faults
    assert 1 <= schedule.instances <= 3
    assert all(f.at_s + f.duration_s < schedule.duration_s for f in schedule.faults)
    assert all(
        SPACE.min_duration_s <= f.duration_s <= SPACE.max_duration_s for f in schedule.faults
    )
    by_resource: dict[tuple[str, str], list[ScheduledFault]] = {}
    for fault in schedule.faults:
        by_resource.setdefault(resource(fault.fault), []).append(fault)
    for faults in by_resource.values():
        for a, b in itertools.pairwise(faults):
            restart = RESTART_S if a.fault.kind in RESTARTED else 0.0
            assert b.at_s >= a.at_s + a.duration_s + restart + SPACE.gap_s - 1e-9


@settings(max_examples=100, deadline=None, database=None)
@given(schedule=schedules(SPACE, seed=9))
def test_replay_round_trips_through_json_and_the_command_line(
    schedule: GeneratedSchedule,
) -> None:
    """The schedule's JSON parses back to the same faults; its replay command, parsed by
    the real `stormproof` parser, builds exactly the scenario the property run ran."""
    assert GeneratedSchedule.from_json(schedule.to_json()) == schedule
    assert parse_schedule(schedule.schedule_json()) == schedule.faults
    words = shlex.split(schedule.replay_command(["--target-cmd", "python -m x"]))
    assert words[:2] == ["stormproof", "run"]
    args = build_parser().parse_args(words[1:])
    assert args.seed == schedule.seed and args.target_cmd == "python -m x"
    [scenario] = resolve(args)
    assert scenario == property_scenario(schedule)


def test_the_space_covers_every_kind_target_and_direction() -> None:
    """Drawing many schedules meets every (kind, target) pair of the space, both one-way
    directions, 1-3 instances, 6-fault schedules and repeated faults on one proxy."""
    kinds: Counter[tuple[str, str]] = Counter()
    streams: Counter[str] = Counter()
    instances: Counter[int] = Counter()
    sizes: Counter[int] = Counter()
    repeated = overlapping = 0

    @settings(
        max_examples=1000,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(schedule=schedules(SPACE))
    def collect(schedule: GeneratedSchedule) -> None:
        nonlocal repeated, overlapping
        for fault in schedule.faults:
            kinds[(fault.fault.kind, fault.fault.target)] += 1
            streams[str(fault.fault.params.get("stream", "both"))] += 1
        instances[schedule.instances] += 1
        sizes[len(schedule.faults)] += 1
        proxies = Counter(resource(f.fault) for f in schedule.faults)
        repeated += any(n > 1 and r[0] == "proxy" for r, n in proxies.items())
        fs = schedule.faults
        overlapping += any(
            a.at_s < b.at_s + b.duration_s and b.at_s < a.at_s + a.duration_s
            for i, a in enumerate(fs)
            for b in fs[i + 1 :]
        )

    collect()
    missing = [(k.kind, t) for k, t in SPACE.choices if kinds[(k.kind, t)] < 3]
    assert missing == [], f"kinds drawn fewer than 3 times: {missing}"
    assert all(streams[s] >= 20 for s in (*STREAMS, "both")), streams
    assert set(instances) == {1, 2, 3}
    assert sizes[SPACE.max_faults] > 0
    assert repeated > 20 and overlapping > 20, (repeated, overlapping)


def test_separate_moves_a_fault_after_the_one_it_would_fight() -> None:
    """Two faults on one proxy at once: the later starts one gap after the first ends;
    faults on other resources (the process, the other proxy) keep their times."""
    down = ScheduledFault(3.0, 2.0, FaultSpec("down", "redis"))
    latency = ScheduledFault(4.0, 1.0, FaultSpec("latency", "redis", {"latency": 100}))
    kill = ScheduledFault(4.0, 1.0, FaultSpec("sigkill", "redis"))
    other = ScheduledFault(3.5, 1.0, FaultSpec("down", "postgres"))
    placed = separate([latency, down, kill, other], gap_s=2.0)
    assert [(f.fault.name, f.at_s) for f in placed] == [
        ("redis-down", 3.0),
        ("postgres-down", 3.5),
        ("redis-sigkill", 4.0),
        ("redis-latency", 7.0),
    ]
    assert GeneratedSchedule(placed).problems() == []
    assert GeneratedSchedule((down, latency)).problems() != []


def test_one_way_faults_validate_their_stream() -> None:
    """`stream` is upstream or downstream, on toxic kinds only; anything else is refused."""
    assert FaultSpec("blackhole", "postgres", {"stream": "downstream"}).validate()
    with pytest.raises(FaultError, match="stream"):
        FaultSpec("blackhole", "postgres", {"stream": "sideways"}).validate()
    with pytest.raises(FaultError, match="unknown parameter"):
        FaultSpec("down", "postgres", {"stream": "upstream"}).validate()


def test_time_budgets_parse() -> None:
    """2h, 90m, 1h30m, 45s and 45 are durations; junk and zero are refused."""
    assert parse_duration("2h") == 7200
    assert parse_duration("90m") == parse_duration("1h30m") == 5400
    assert parse_duration("45s") == parse_duration("45") == 45
    for bad in ("", "2 hours", "0m", "h"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


def test_seeded_event_ids_repeat_with_the_seed() -> None:
    """The workload's event ids come from its seed: same seed, same ids; another, others."""
    from scenarios.workload import seeded_uuid

    def ids(seed: int) -> list[str]:
        rng = random.Random(seed)
        return [seeded_uuid(rng) for _ in range(5)]

    assert ids(3) == ids(3)
    assert ids(3) != ids(4)
    assert all(len(i) == 36 and i[14] == "4" for i in ids(3))


def test_scenario_of_a_schedule_runs_its_instances_and_faults(tmp_path: Path) -> None:
    """The scenario carries the schedule's instances, faults and a duration past the last
    fault's end (the tail)."""
    faults = (ScheduledFault(2.0, 1.5, FaultSpec("down", "redis")),)
    schedule = GeneratedSchedule(faults, instances=3, seed=4)
    scenario = property_scenario(schedule)
    assert scenario.instances == 3 and scenario.faults == faults
    assert scenario.duration_s == schedule.duration_s > 3.5


def test_the_disk_fault_extension_is_drawn_and_valid() -> None:
    """`with_kinds(*DISK_FAULT_KINDS)` (`--disk-faults`) adds power-cut and disk faults:
    drawn, valid, and a power-cut process is left alone until it restarted."""
    from scenarios.run.generate.space import DISK_FAULT_KINDS

    space = ScheduleSpace().with_kinds(*DISK_FAULT_KINDS)
    kinds: Counter[str] = Counter()

    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(schedule=schedules(space))
    def collect(schedule: GeneratedSchedule) -> None:
        assert schedule.problems() == []
        kinds.update(f.fault.kind for f in schedule.faults)

    collect()
    assert all(kinds[k.kind] > 0 for k in DISK_FAULT_KINDS), kinds


def test_a_focused_space_draws_only_the_matching_faults(capsys: pytest.CaptureFixture[str]) -> None:
    """`only(["postgres-*"])` (`--faults`) keeps every PostgreSQL fault and nothing else;
    a list of names keeps those; a pattern matching nothing is a one-line error (exit 2)."""
    from scenarios.cli import main

    focused = ScheduleSpace().only(["postgres-*"])
    assert {t for _, t in focused.choices} == {"postgres"}
    assert {k.kind for k, _ in focused.choices} == {k.kind for k, _ in SPACE.choices}
    names = ScheduleSpace().only(["postgres-latency", "redis-down"])
    assert sorted(f"{t}-{k.kind}" for k, t in names.choices) == ["postgres-latency", "redis-down"]

    @settings(
        max_examples=100,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(schedule=schedules(focused))
    def drawn(schedule: GeneratedSchedule) -> None:
        assert schedule.problems() == []
        assert all(f.fault.target == "postgres" for f in schedule.faults)

    drawn()
    with pytest.raises(ValueError, match="'mysql-\\*' matches no fault"):
        ScheduleSpace().only(["mysql-*"])
    assert main(["property", "--faults", "postgres-*,nope"]) == 2
    assert capsys.readouterr().err.strip() == (
        "stormproof: fault pattern 'nope' matches no fault (e.g. postgres-*)"
    )
