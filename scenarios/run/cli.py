"""`stormproof run` and `stormproof list`: the catalogue from the command line."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from scenarios.faults import FaultError
from scenarios.run.capabilities import refusals
from scenarios.run.catalogue import load_catalogue, select
from scenarios.run.generate.search import SearchSettings
from scenarios.run.generate.space import DISK_FAULT_KINDS, ScheduleSpace
from scenarios.run.runner import RunOptions, run_catalogue
from scenarios.run.scenario import (
    Scenario,
    ScenarioError,
    load_scenarios,
    parse_schedule,
)
from scenarios.run.schedules import (
    PropertyCli,
    parse_duration,
    run_property_cli,
    schedule_scenario,
)
from scenarios.stack.errors import StackError
from scenarios.stack.providers import resolve_provider
from scenarios.target import TargetSpec
from scenarios.truth import TRUTH_QUERY


def resolve(args: argparse.Namespace) -> list[Scenario]:
    """The scenarios to run, fully validated (nothing has started yet)."""
    catalogue = load_scenarios(args.scenario_file) if args.scenario_file else load_catalogue()
    if args.all and args.scenarios:
        raise ScenarioError("give scenario names or --all, not both")
    chosen = catalogue if args.all else select(catalogue, args.scenarios) if args.scenarios else []
    instances = getattr(args, "instances", 1)
    if args.schedule is not None:
        faults = parse_schedule(args.schedule, "--schedule")
        if len(chosen) > 1:
            raise ScenarioError("--schedule applies to one scenario at most")
        chosen = [schedule_scenario(faults, chosen[0] if chosen else None, instances)]
    elif instances != 1:
        raise ScenarioError("--instances applies to --schedule only")
    if not 1 <= instances <= 8:
        raise ScenarioError("--instances must be between 1 and 8")
    if not chosen:
        raise ScenarioError("nothing to run: name scenarios, or --all (see `stormproof list`)")
    return chosen


def _positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def default_provider(given: str | None) -> str:
    """--provider, else $STORMPROOF_STACK, else local (no Docker needed)."""
    return given or os.environ.get("STORMPROOF_STACK") or "local"


def provider_allowed(args: argparse.Namespace, resets: str) -> str | None:
    """The provider to use, or None (said on stderr) when it is an external stack that
    `resets` (what the command would wipe) and --allow-reset was not given."""
    provider = default_provider(args.provider)
    if provider == "external" and not args.allow_reset:
        print(
            f"stormproof: {resets}; pass --allow-reset to do that on an external stack",
            file=sys.stderr,
        )
        return None
    return provider


def cmd_list(args: argparse.Namespace) -> int:
    """`stormproof list`: one line per scenario."""
    catalogue = load_scenarios(args.scenario_file) if args.scenario_file else load_catalogue()
    width = max(len(s.name) for s in catalogue)
    for scenario in catalogue:
        print(f"{scenario.name:<{width}}  {scenario.duration_s:>4.0f}s  {scenario.description}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """`stormproof run`: run the scenarios with a progress display; 0 all passed."""
    try:
        scenarios = resolve(args)
        target = TargetSpec.from_command_line(args.target_cmd)
    except (ScenarioError, FaultError, ValueError) as exc:
        print(f"stormproof: {exc}", file=sys.stderr)
        return 2
    provider = provider_allowed(
        args, "a run drops audit_log/beneficios and flushes Redis before each scenario"
    )
    if provider is None:
        return 2
    scenarios = _drop_unsupported(scenarios, provider, args.all)
    if not scenarios:
        return 2
    known = {check.name for scenario in scenarios for check in scenario.checkers()}
    unknown = sorted(set(args.skip_check) - known)
    if unknown:
        print(
            f"stormproof: --skip-check {', '.join(unknown)}: no such check in these scenarios "
            f"(they have: {', '.join(sorted(known))})",
            file=sys.stderr,
        )
        return 2
    options = RunOptions(
        report_dir=args.report,
        target=target,
        quick=args.quick,
        seed=args.seed,
        provider=provider,
        truth_query=args.truth_query,
        allow_reset=args.allow_reset,
        prometheus=args.with_prometheus,
        jobs=args.jobs,
        skip_checks=frozenset(args.skip_check),
    )
    console = Console(stderr=True)
    started = time.monotonic()
    with Progress(
        TextColumn("[bold]{task.fields[name]:<28}"),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        overall = progress.add_task("", total=len(scenarios), name="catalogue")

        def on_scenario(number: int, scenario: Scenario):  # type: ignore[no-untyped-def]
            task = progress.add_task("", total=1.0, name=scenario.name)

            def report(what: str, done: float) -> None:
                progress.update(task, completed=done, description=what)
                if done >= 1.0:
                    progress.update(overall, advance=1)

            return report

        try:
            summary, run_dir = run_catalogue(scenarios, options, on_scenario)
        except StackError as exc:
            print(f"stormproof: {exc}", file=sys.stderr)
            return 2
    wall = time.monotonic() - started
    for result in summary.scenarios:
        verdict = result.verdict
        failed = ", ".join(c.checker for c in result.failed_checks) or (result.error or "")
        print(f"{verdict}  {result.name:<28} {result.wall_s:5.1f}s  {failed}")
        for check in result.failed_checks:
            print(f"        {check.checker}: {check.summary}")
        if result.error:
            print(f"        error: {result.error}")
    invalid = sum(r.invalid for r in summary.scenarios)
    print(
        f"{sum(r.passed for r in summary.scenarios)} passed, "
        f"{sum(not r.passed for r in summary.scenarios)} failed"
        + (f" ({invalid} INVALID: baseline not steady)" if invalid else "")
        + f" in {wall:.1f}s wall time"
    )
    print(f"report: {run_dir / 'report.html'}")
    return 0 if summary.passed else 1


def _drop_unsupported(scenarios: list[Scenario], provider: str, all_: bool) -> list[Scenario]:
    """Say, before anything starts, which scenarios the provider cannot run.

    With --all the others still run; named scenarios the provider cannot run stop the run
    (an empty list is returned).
    """
    try:
        refused = refusals(scenarios, resolve_provider(provider, os.environ))
    except StackError as exc:
        print(f"stormproof: {exc}", file=sys.stderr)
        return []
    for name, why in refused.items():
        verdict = "skipped" if all_ else "cannot run"
        print(f"stormproof: {name} {verdict}, it needs the local stack: {why}", file=sys.stderr)
    if refused and not all_:
        return []
    return [s for s in scenarios if s.name not in refused]


def cmd_property(args: argparse.Namespace) -> int:
    """`stormproof property`: generated fault schedules; 0 the property held."""
    try:
        budget = parse_duration(args.time_budget) if args.time_budget else None
        target = TargetSpec.from_command_line(args.target_cmd)
        for name in ("examples", "reruns", "max_shrink_runs"):
            if getattr(args, name) < (1 if name == "examples" else 0):
                raise ValueError(f"--{name.replace('_', '-')} is too small")
        space = (
            ScheduleSpace().with_kinds(*DISK_FAULT_KINDS) if args.disk_faults else ScheduleSpace()
        )
        if args.faults:
            space = space.only([p.strip() for p in args.faults.split(",") if p.strip()])
    except ValueError as exc:
        print(f"stormproof: {exc}", file=sys.stderr)
        return 2
    provider = provider_allowed(args, "property examples drop the tables and flush Redis")
    if provider is None:
        return 2
    replay: list[str] = []
    if args.target_cmd:
        replay += ["--target-cmd", args.target_cmd]
    if args.provider:
        replay += ["--provider", args.provider]
    if args.allow_reset:
        replay += ["--allow-reset"]
    if args.truth_query != TRUTH_QUERY:
        replay += ["--truth-query", args.truth_query]
    search = SearchSettings(
        examples=args.examples,
        seed=args.seed,
        shrink=not args.no_shrink,
        reruns=args.reruns,
        max_shrink_runs=args.max_shrink_runs,
        time_budget_s=budget,
        space=space,
    )
    options = RunOptions(
        report_dir=args.report,
        target=target,
        quick=True,
        seed=args.seed,
        provider=provider,
        truth_query=args.truth_query,
        allow_reset=args.allow_reset,
    )
    return run_property_cli(PropertyCli(search, options, tuple(replay)))


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `run`, `property` and `list` sub-commands."""
    run = commands.add_parser("run", help="run scenarios against the target and write a report")
    run.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="names from `list`")
    run.add_argument("--all", action="store_true", help="the whole catalogue")
    run.add_argument("--quick", action="store_true", help="short times (each scenario < 30 s)")
    run.add_argument("--report", type=Path, default=Path("reports"), help="where runs go")
    run.add_argument(
        "--target-cmd", default=None, help="command of the target (default: reference)"
    )
    run.add_argument("--schedule", default=None, help="JSON list of {at_s, fault, duration_s}")
    run.add_argument("--seed", type=int, default=0, help="the workload's random seed")
    run.add_argument(
        "--skip-check",
        action="append",
        default=[],
        metavar="NAME",
        help="a check not to run (repeatable), e.g. alerts, metrics, prometheus_alerts for a "
        "service without the reference's operator surface (docs/contract.md)",
    )
    run.add_argument(
        "--jobs",
        type=_positive_int,
        default=1,
        help="scenarios run at once, each on stacks of its own (default 1; local/docker)",
    )
    run.add_argument(
        "--instances", type=int, default=1, help="target instances for --schedule (1-8)"
    )
    run.add_argument("--scenario-file", type=Path, default=None, help="TOML/JSON scenarios")
    run.add_argument(
        "--provider", default=None, help="stack provider: local (default) | external | docker"
    )
    run.add_argument(
        "--allow-reset",
        action="store_true",
        help="allow dropping the tables and flushing Redis on an external stack",
    )
    run.add_argument(
        "--truth-query",
        default=TRUTH_QUERY,
        help="SQL returning (event_id, row count) of the audit events to check",
    )
    run.add_argument(
        "--with-prometheus",
        action="store_true",
        help="run a Prometheus scraping the targets with deploy/prometheus/rules.yml",
    )
    run.set_defaults(handler=cmd_run)
    prop = commands.add_parser("property", help="Hypothesis-generated fault schedules")
    prop.add_argument("--examples", type=int, default=5, help="schedules to generate")
    prop.add_argument("--seed", type=int, default=0, help="Hypothesis and workload seed")
    prop.add_argument("--report", type=Path, default=Path("reports/property"), help="where runs go")
    prop.add_argument("--no-shrink", action="store_true", help="report the first failure")
    prop.add_argument(
        "--time-budget",
        default=None,
        help="keep drawing examples for this long (e.g. 2h, 90m); overrides --examples",
    )
    prop.add_argument(
        "--reruns", type=int, default=1, help="re-runs of a passing schedule while shrinking"
    )
    prop.add_argument(
        "--max-shrink-runs", type=int, default=24, help="real runs spent shrinking a failure"
    )
    prop.add_argument(
        "--target-cmd", default=None, help="command of the target (default: reference)"
    )
    prop.add_argument(
        "--disk-faults", action="store_true", help="also draw power-cut and disk faults (FUSE)"
    )
    prop.add_argument(
        "--faults",
        default=None,
        help="draw only faults whose name matches these comma-separated patterns "
        "(e.g. 'postgres-*', 'redis-down,redis-sigkill')",
    )
    prop.add_argument("--provider", default=None, help="local (default) | external | docker")
    prop.add_argument(
        "--allow-reset", action="store_true", help="allow resetting an external stack"
    )
    prop.add_argument(
        "--truth-query",
        default=TRUTH_QUERY,
        help="SQL returning (event_id, row count) of the audit events to check",
    )
    prop.set_defaults(handler=cmd_property)
    listing = commands.add_parser("list", help="list the scenario catalogue")
    listing.add_argument(
        "--scenario-file", type=Path, default=None, help="TOML/JSON scenarios to list"
    )
    listing.set_defaults(handler=cmd_list)
