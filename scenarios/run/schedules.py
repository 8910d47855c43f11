"""Schedules on the command line: `run --schedule` and `stormproof property`.

A property run draws fault schedules (`scenarios.run.generate.space`), runs each as a
scenario built here, and shrinks a failure to a minimal schedule with the command that
replays it on its own (`stormproof run --quick --schedule JSON --seed N ...`). The scenario
of a schedule is the same whether the property run or `run --schedule` builds it: the
catalogue's common target settings, the default workload, the given number of instances,
and the expectations derived from the catalogue for its fault kinds
(`scenarios.run.generate.expectations`).
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from scenarios.checkers.base import CheckResult
from scenarios.report import RunSummary, write_html_report, write_results_json
from scenarios.run.catalogue import load_catalogue
from scenarios.run.generate.expectations import (
    common_env,
    kind_expectations,
    schedule_expectations,
)
from scenarios.run.generate.model import GeneratedSchedule, run_length
from scenarios.run.generate.report import write_property_report
from scenarios.run.generate.search import Outcome, Search, SearchResult, SearchSettings
from scenarios.run.runner import RunOptions, run_scenario
from scenarios.run.scenario import Scenario, ScheduledFault
from scenarios.stack import open_stack
from scenarios.workload import WorkloadSpec

PROPERTY_WORKLOAD = WorkloadSpec(rate_per_s=150, concurrency=12)
"""The workload of every schedule run: the default mix (every operation the checkers judge)."""


@cache
def _derived() -> tuple[dict[str, str], dict[str, dict[str, dict[str, object]]]]:
    catalogue = load_catalogue()
    return common_env(catalogue), kind_expectations(catalogue)


def schedule_scenario(
    faults: tuple[ScheduledFault, ...], base: Scenario | None, instances: int = 1
) -> Scenario:
    """A scenario running `faults`: the named one's, or the schedule default (see above)."""
    length = run_length(faults)
    if base is not None:
        return replace(
            base,
            faults=faults,
            duration_s=max(base.duration_s, length),
            instances=instances if instances != 1 else base.instances,
        )
    env, table = _derived()
    return Scenario(
        name="schedule",
        description="A fault schedule given on the command line (or found by a property run).",
        duration_s=length,
        workload=PROPERTY_WORKLOAD,
        faults=faults,
        expect=schedule_expectations((f.fault for f in faults), table),
        target_env=env,
        instances=instances,
    )


def property_scenario(schedule: GeneratedSchedule) -> Scenario:
    """The scenario a generated schedule runs in (the same as its replay command's)."""
    return schedule_scenario(schedule.faults, None, schedule.instances)


_BUDGET = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?$")


def parse_duration(text: str) -> float:
    """'2h', '90m', '1h30m', '45s' or '45' -> seconds; ValueError naming the text."""
    match = _BUDGET.match(text.strip())
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError(f"bad duration {text!r} (e.g. 2h, 90m, 1h30m, 45s)")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    return float(total)


@dataclass(frozen=True)
class PropertyCli:
    """`stormproof property` options that reach the runs and the replay command."""

    search: SearchSettings
    options: RunOptions
    replay_args: tuple[str, ...] = ()


def failure_strength(failed: Sequence[CheckResult]) -> float:
    """How much the failing checks failed by: the findings a checker counts against a
    threshold (events lost, written twice, corrupted...) over that threshold, at least 1
    per failing check (a count without a threshold, like events recovered, is no finding)."""
    total = 0.0
    for check in failed:
        counts = check.details.get("counts")
        over = 0.0
        if isinstance(counts, Mapping):
            for name, value in counts.items():
                limit = check.thresholds.get(name)
                if isinstance(value, int | float) and isinstance(limit, int | float):
                    over += max(float(value) - float(limit), 0.0)
        total += max(over, 1.0)
    return total


def run_property_cli(cli: PropertyCli) -> int:
    """`stormproof property`: generated schedules on one stack; 0 when none failed."""
    options = cli.options
    out_dir = options.report_dir
    with open_stack(options.provider, base_dir=out_dir / "stack") as stack:

        def runner(schedule: GeneratedSchedule, where: Path) -> Outcome:
            result, history = asyncio.run(
                run_scenario(
                    property_scenario(schedule),
                    stack,
                    replace(options, seed=schedule.seed),
                    where,
                )
            )
            summary = RunSummary.of([result], result.wall_s, result.started_at)
            write_results_json(where, summary)
            if not result.passed:
                histories = {result.name: history} if history is not None else {}
                write_html_report(where / "report.html", summary, histories)
            why = result.error or "; ".join(
                f"{c.checker}: {c.summary}" for c in result.failed_checks
            )
            return Outcome(result.passed, why, str(where), failure_strength(result.failed_checks))

        def listener(schedule: GeneratedSchedule, outcome: Outcome, phase: str) -> None:
            verdict = "pass" if outcome.passed else "FAIL"
            print(f"{verdict:<4} {phase:<8} {schedule.describe()}", flush=True)
            if not outcome.passed:
                print(f"     {outcome.why}  ({outcome.where})", flush=True)

        result = Search(cli.search, runner, out_dir, listener=listener).run()
    write_property_report(out_dir, result, cli.search, cli.replay_args)
    return report_outcome(result, cli.search, cli.replay_args)


def report_outcome(
    result: SearchResult, search: SearchSettings, replay_args: Sequence[str], out: object = None
) -> int:
    """Print the verdict, then one block per failure (one line per flaky one); the exit code."""
    stream = out or sys.stdout
    verdict = "held" if result.passed else f"failed {len(result.failures)} time(s)"
    print(
        f"property {verdict}: {result.runs} run(s) in {result.rounds} round(s), "
        f"{result.wall_s:.0f} s (seed {search.seed})",
        file=stream,  # type: ignore[arg-type]
    )
    for failure in result.failures:
        command = failure.minimal.replay_command(replay_args)
        if failure.flaky:
            print(
                f"FLAKY: {failure.minimal.describe()} failed once and then passed "
                f"{search.reruns + 1} re-run(s); replay: {command}",
                file=stream,  # type: ignore[arg-type]
            )
            continue
        original = failure.steps[0].schedule
        print(
            f"property failed: shrunk from {len(original.faults)} fault(s) to "
            f"{len(failure.minimal.faults)} in {len(failure.steps) - 1} step(s)\n"
            f"  minimal: {failure.minimal.describe()}\n"
            f"  why: {failure.why}\n"
            f"  replay: {command}",
            file=stream,  # type: ignore[arg-type]
        )
    return 0 if result.passed else 1
