"""Expectations of generated schedules are derived from the catalogue: a single-kind
schedule gets exactly what the catalogue says of that kind, a mix gets the looser meet,
and a change in the catalogue changes them (nothing is copied by hand)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from scenarios.faults import FaultSpec
from scenarios.run.catalogue import load_catalogue
from scenarios.run.generate.expectations import (
    UNIVERSAL,
    comparable,
    kind_expectations,
    meet,
    not_derived,
    observation_env,
    schedule_expectations,
)
from scenarios.run.generate.model import GeneratedSchedule
from scenarios.run.scenario import ScheduledFault
from scenarios.run.schedules import property_scenario


def _without_fs(expect: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    return {k: {o: v for o, v in opts.items() if o != "fs"} for k, opts in expect.items()}


def test_a_single_kind_gets_the_catalogue_scenario_of_that_kind() -> None:
    """For every kind the catalogue tests alone in one comparable scenario, the derived
    expectations are that scenario's own, checker for checker and bound for bound."""
    catalogue = load_catalogue()
    table = kind_expectations(catalogue)
    checked = 0
    for scenario in comparable(catalogue):
        names = {f.fault.name for f in scenario.faults}
        alone = [s for s in comparable(catalogue) if {f.fault.name for f in s.faults} == names]
        if len(names) == 1 and len(alone) == 1:
            [name] = names
            skipped = not_derived(scenario, observation_env(catalogue))
            expected = {k: dict(v) for k, v in scenario.expect.items() if k not in skipped}
            assert _without_fs(table[name]) == _without_fs(expected), name
            checked += 1
    assert checked >= 5


def test_a_change_in_the_catalogue_changes_the_derived_bound() -> None:
    """Loosen redis-down's latency bound in a copy of the catalogue: the derived bound for
    redis-down follows it; drop its breaker expectation: the derived one loses it too."""
    catalogue = load_catalogue()
    edited = []
    for scenario in catalogue:
        if scenario.name == "redis-down":
            expect = {k: v for k, v in scenario.expect.items() if k != "breaker"}
            expect["latency"] = {"fault": {"p99_s": 9.5}}
            scenario = replace(scenario, expect=expect)
        edited.append(scenario)
    before, after = kind_expectations(catalogue), kind_expectations(edited)
    assert "breaker" in before["redis-down"] and "breaker" not in after["redis-down"]
    assert after["redis-down"]["latency"]["fault"] == {"p99_s": 9.5}


def test_the_meet_keeps_what_holds_under_both_at_the_looser_bound() -> None:
    """Numbers: the larger bound (the smaller minimum); fs: the common operations; a bound
    on one side only: none; differing allowed paths: the requirement is dropped, the
    checker kept; a differing setting or a checker on one side only: the checker goes."""
    a: dict[str, dict[str, Any]] = {
        "latency": {"fault": {"p99_s": 0.5, "p95_s": 0.1}, "fs": ["cache_get", "audit"]},
        "audit": {"paths": {"fault": ["db"]}, "min_evidence": 20},
        "staleness": {"during_fault": "allowed"},
        "breaker": {"open_within_s": 2.0},
    }
    b: dict[str, dict[str, Any]] = {
        "latency": {"fault": {"p99_s": 0.8}, "fs": ["audit"]},
        "audit": {"paths": {"fault": ["queue"]}, "min_evidence": 10},
        "staleness": {"during_fault": "forbidden"},
    }
    assert meet(a, b) == {
        "audit": {"paths": {}, "min_evidence": 10},
        "latency": {"fault": {"p99_s": 0.8}, "fs": ["audit"]},
    }


def test_schedules_get_the_meet_of_their_kinds() -> None:
    """Two Redis kinds: their common checkers at the looser bounds; Redis and PostgreSQL
    together: no audit path requirement (both down means a third path) but audit kept; a
    one-way fault or a kind the catalogue never runs: the universal expectations."""
    table = kind_expectations(load_catalogue())
    redis = schedule_expectations(
        [FaultSpec("down", "redis"), FaultSpec("latency", "redis", {"latency": 500})], table
    )
    assert redis["latency"]["fault"]["p99_s"] == max(
        table["redis-down"]["latency"]["fault"]["p99_s"],
        table["redis-latency"]["latency"]["fault"]["p99_s"],
    )
    assert "breaker" in redis and "write_availability" in redis
    both = schedule_expectations([FaultSpec("down", "redis"), FaultSpec("down", "postgres")], table)
    assert "audit" in both and not both["audit"].get("paths", {}).get("fault")
    one_way = FaultSpec("blackhole", "postgres", {"stream": "downstream"})
    assert schedule_expectations([one_way], table) == table[UNIVERSAL]
    assert schedule_expectations([FaultSpec("sigstop", "target")], table) == table[UNIVERSAL]
    assert "audit" in table[UNIVERSAL]


def test_a_property_example_runs_every_derived_checker() -> None:
    """The scenario of a Redis-down schedule carries every checker the catalogue's
    redis-down has (and the steady-state check the scenario always adds)."""
    catalogue = {s.name: s for s in load_catalogue()}
    schedule = GeneratedSchedule((ScheduledFault(3.0, 2.0, FaultSpec("down", "redis")),))
    scenario = property_scenario(schedule)
    redis_down = catalogue["redis-down"]
    skipped = not_derived(redis_down, observation_env(list(catalogue.values())))
    assert skipped == {"prometheus_alerts", "alerts"}  # a Prometheus; alert timing tuned
    assert set(scenario.expect) == set(redis_down.expect) - skipped
    names = {c.name for c in scenario.checkers()}
    assert names >= {c.name for c in redis_down.checkers()} - skipped
