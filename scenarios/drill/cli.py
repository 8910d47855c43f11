"""`stormproof drill [NAME... | --all] [--quick] [--target-cmd CMD] [--report DIR]`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from scenarios.checkers import CheckResult
from scenarios.drill.runbook import RUNBOOK, check_runbook, write_runbook
from scenarios.drill.spec import DRILLS_FILE, DrillError, Step, load_drills, select_drills
from scenarios.run.cli import provider_allowed
from scenarios.run.runner import RunOptions
from scenarios.stack.errors import StackError
from scenarios.target import TargetSpec


def print_step(drill: str, number: int, step: Step, check: CheckResult, seconds: float) -> None:
    """One line per step: verdict, time, what, and why it failed."""
    kind = "incident" if step.is_incident else "operator"
    verdict = "ok  " if check.passed else "FAIL"
    print(f"  {verdict} {seconds:5.1f}s  {drill}#{number:02d} [{kind}] {step.say}", flush=True)
    if step.run:
        print(f"             $ {step.run}", flush=True)
    if not check.passed:
        print(f"             -> {check.summary}", flush=True)


def cmd_drill(args: argparse.Namespace) -> int:
    """Run the drills; 0 when every step of every drill passed."""
    try:
        drills = load_drills(args.drill_file)
        if args.list:
            for drill in drills:
                print(f"{drill.name:<18} {len(drill.steps):>2} steps  {drill.title}")
            return 0
        if args.write_runbook:
            write_runbook(drills, args.runbook)
            print(f"wrote the drill sections of {args.runbook}")
            return 0
        if args.check_runbook:
            problems = check_runbook(drills, args.runbook)
            for problem in problems:
                print(problem)
            return 1 if problems else 0
        if args.all and args.drills:
            raise DrillError("give drill names or --all, not both")
        chosen = drills if args.all else select_drills(drills, args.drills)
        if not chosen:
            raise DrillError("nothing to run: name drills, or --all (see --list)")
        target = TargetSpec.from_command_line(args.target_cmd)
    except (DrillError, ValueError) as exc:
        print(f"stormproof: {exc}", file=sys.stderr)
        return 2
    provider = provider_allowed(args, "a drill drops audit_log and flushes Redis first")
    if provider is None:
        return 2
    options = RunOptions(
        report_dir=args.report,
        target=target,
        quick=args.quick,
        provider=provider,
        allow_reset=args.allow_reset,
    )
    from scenarios.drill.runner import run_drills

    started = time.monotonic()
    try:
        summary, run_dir = run_drills(chosen, options, print_step)
    except StackError as exc:
        print(f"stormproof: {exc}", file=sys.stderr)
        return 2
    for result in summary.scenarios:
        print(f"{'PASS' if result.passed else 'FAIL'}  {result.name:<22} {result.wall_s:5.1f}s")
        if result.error:
            print(f"        error: {result.error}")
    passed = sum(r.passed for r in summary.scenarios)
    print(
        f"{passed} drills passed, {len(summary.scenarios) - passed} failed in "
        f"{time.monotonic() - started:.1f}s wall time"
    )
    print(f"report: {run_dir / 'report.html'}")
    return 0 if summary.passed else 1


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `drill` sub-command."""
    drill = commands.add_parser("drill", help="run the runbook's drills against the target")
    drill.add_argument("drills", nargs="*", metavar="NAME", help="drill names")
    drill.add_argument("--all", action="store_true", help="every drill")
    drill.add_argument("--quick", action="store_true", help="less audit traffic per drill")
    drill.add_argument("--target-cmd", default=None, help="command of the target")
    drill.add_argument("--report", type=Path, default=Path("reports"), help="where runs go")
    drill.add_argument("--provider", default=None, help="local (default) | external | docker")
    drill.add_argument(
        "--allow-reset", action="store_true", help="allow a reset of an external stack"
    )
    drill.add_argument("--list", action="store_true", help="list the drills")
    drill.add_argument("--drill-file", type=Path, default=DRILLS_FILE, help="the drills (TOML)")
    drill.add_argument("--runbook", type=Path, default=RUNBOOK, help="the runbook (markdown)")
    drill.add_argument(
        "--write-runbook", action="store_true", help="regenerate the runbook's drill sections"
    )
    drill.add_argument(
        "--check-runbook", action="store_true", help="exit 1 when the runbook and drills differ"
    )
    drill.set_defaults(handler=cmd_drill)
