"""Property runs: Hypothesis generates fault schedules; the guarantees must hold for each.

The property: with the workload running and any generated schedule of faults on Redis and
PostgreSQL (down, black hole, latency, reset_peer, SIGKILL; start and duration), every
acknowledged audit event is in `audit_log` exactly once after healing and recovery, and no
cache read fails. A failure shrinks to a minimal schedule, and the command that replays it
(`stormproof run --schedule '...'`) is printed.
"""

from __future__ import annotations

import asyncio
import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from scenarios.faults import FaultSpec
from scenarios.run.catalogue import load_catalogue
from scenarios.run.runner import RunOptions, run_scenario
from scenarios.run.scenario import Scenario, ScheduledFault
from scenarios.stack import open_stack
from scenarios.workload import WorkloadSpec

KINDS = ("down", "blackhole", "latency", "reset_peer", "sigkill")
TARGETS = ("redis", "postgres")
MAX_START_S = 6.0
MAX_DURATION_S = 4.0


def _fault(target: str) -> st.SearchStrategy[ScheduledFault]:
    def build(kind: str, at_tenths: int, duration_tenths: int) -> ScheduledFault:
        params = {"latency": 400} if kind == "latency" else {}
        return ScheduledFault(
            at_s=at_tenths / 10,
            duration_s=duration_tenths / 10,
            fault=FaultSpec(kind, target, params).validate(),
        )

    return st.builds(
        build,
        st.sampled_from(KINDS),
        st.integers(10, int(MAX_START_S * 10)),
        st.integers(5, int(MAX_DURATION_S * 10)),
    )


def schedules() -> st.SearchStrategy[tuple[ScheduledFault, ...]]:
    """One or two faults, at most one per dependency (overlaps across them allowed)."""
    return (
        st.lists(st.sampled_from(TARGETS), min_size=1, max_size=2, unique=True)
        .flatmap(lambda targets: st.tuples(*(_fault(t) for t in targets)))
        .map(lambda faults: tuple(sorted(faults, key=lambda f: f.at_s)))
    )


def schedule_json(faults: tuple[ScheduledFault, ...]) -> str:
    """The schedule in the `--schedule` JSON format (compact)."""
    return json.dumps([f.to_json() for f in faults], separators=(",", ":"))


def replay_command(faults: tuple[ScheduledFault, ...], seed: int) -> str:
    """The command that replays this schedule."""
    return f"stormproof run --quick --schedule {shlex.quote(schedule_json(faults))} --seed {seed}"


@dataclass(frozen=True)
class PropertyRun:
    """A property run's settings: how many schedules, the seed, the report dir."""

    examples: int
    seed: int
    report_dir: Path


Runner = Callable[[tuple[ScheduledFault, ...], Path], tuple[bool, str]]
"""Runs one schedule (report dir given); returns (passed, why not)."""


def check_property(run: PropertyRun, runner: Runner, *, shrink: bool = True) -> None:
    """Run `run.examples` generated schedules; raises AssertionError (shrunk) on a failure."""
    counter = iter(range(1_000_000))
    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if shrink else [])

    @settings(
        max_examples=run.examples,
        deadline=None,
        database=None,
        derandomize=False,
        phases=phases,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @given(faults=schedules())
    def prop(faults: tuple[ScheduledFault, ...]) -> None:
        note(f"replay: {replay_command(faults, run.seed)}")
        passed, why = runner(faults, run.report_dir / f"example-{next(counter)}")
        assert passed, f"{why}\nreplay: {replay_command(faults, run.seed)}"

    hypothesis_seed(run.seed)(prop)()


SCHEDULE_TAIL_S = 5.0


def schedule_scenario(faults: tuple[ScheduledFault, ...], base: Scenario | None) -> Scenario:
    """A scenario running `faults`: the named one's, or the property runs' default."""
    end = max((f.at_s + f.duration_s for f in faults), default=0.0)
    if base is not None:
        return replace(base, faults=faults, duration_s=max(base.duration_s, end + SCHEDULE_TAIL_S))
    catalogue = {s.name: s for s in load_catalogue()}
    env = catalogue["redis-down"].target_env
    return Scenario(
        name="schedule",
        description="A fault schedule given on the command line (or found by a property run).",
        duration_s=end + SCHEDULE_TAIL_S,
        workload=WorkloadSpec(
            rate_per_s=150,
            concurrency=12,
            mix={"cache_get": 4, "cache_put": 1, "audit": 4},
        ),
        faults=faults,
        # generated windows can be 0.5 s long: ~15 acks and reads at this rate, so the
        # evidence minimum per window is 5 here (20 in the catalogue's 5 s windows)
        expect={
            "audit": {"min_evidence": 5},
            "cache_availability": {"max_failed_reads": 0, "fs": ["cache_get"], "min_evidence": 5},
        },
        target_env=env,
    )


def property_scenario(faults: tuple[ScheduledFault, ...]) -> Scenario:
    """The scenario a generated schedule runs in (the same as `run --schedule`)."""
    return schedule_scenario(faults, None)


def run_property_cli(
    examples: int, seed: int, report_dir: Path, shrink: bool, provider: str | None
) -> int:
    """`stormproof property`: generated schedules against the reference on one stack."""
    options = RunOptions(report_dir=report_dir, seed=seed, provider=provider)
    with open_stack(provider, base_dir=report_dir / "stack") as stack:

        def runner(faults: tuple[ScheduledFault, ...], where: Path) -> tuple[bool, str]:
            scenario = property_scenario(faults)
            result, _ = asyncio.run(run_scenario(scenario, stack, options, where))
            why = result.error or "; ".join(
                f"{c.checker}: {c.summary}" for c in result.failed_checks
            )
            print(f"{'PASS' if result.passed else 'FAIL'}  {schedule_json(faults)}", flush=True)
            return result.passed, why

        try:
            check_property(PropertyRun(examples, seed, report_dir), runner, shrink=shrink)
        except AssertionError as exc:
            print(f"property failed (minimal schedule below)\n{exc}")
            return 1
    print(f"property held for {examples} generated schedules (seed {seed})")
    return 0
