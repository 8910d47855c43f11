"""Runs drills: a clean slate, the target with the alert receiver, then each step in order.

Each step's verdict is a `CheckResult`, each drill a `ScenarioResult`: the same results
JSON, JUnit XML and HTML report as `stormproof run`. A failed operator step does not stop
the drill (the later checks tell what else went wrong); a failed incident step does.
Every fault is reverted and every process stopped in `finally`, whatever happened.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from scenarios.checkers import CheckResult
from scenarios.drill.incident import DrillState, do_incident
from scenarios.drill.operator import command_env, run_step
from scenarios.drill.spec import Drill, Step
from scenarios.faults import FaultInjector
from scenarios.report import (
    RunSummary,
    ScenarioResult,
    write_html_report,
    write_junit_xml,
    write_results_json,
)
from scenarios.run.runner import RunOptions
from scenarios.stack import Stack, StackError, open_stack
from scenarios.target import TargetGroup, TargetSpec, wait_healthy
from scenarios.truth import reset_state
from scenarios.webhook import WebhookReceiver

StepReport = Callable[[str, int, Step, CheckResult, float], None]
"""Called after each step with (drill name, step number, step, verdict, seconds)."""


def run_drills(
    drills: Sequence[Drill],
    options: RunOptions,
    report: StepReport | None = None,
    stack: Stack | None = None,
) -> tuple[RunSummary, Path]:
    """Run `drills` in order on one stack (`stack`, else one opened and closed here);
    write results, JUnit XML and the HTML report."""
    started = time.monotonic()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    run_dir = options.report_dir / datetime.now(UTC).strftime("drill-%Y%m%dT%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    results: list[ScenarioResult] = []
    owned = stack is None
    try:
        if stack is None:
            stack = open_stack(options.provider, base_dir=run_dir / "stack")
        for drill in drills:
            results.append(
                asyncio.run(run_drill(drill, stack, options, run_dir / drill.name, report))
            )
    finally:
        if owned and stack is not None:
            stack.close()
        summary = RunSummary.of(results, time.monotonic() - started, started_at)
        write_results_json(run_dir, summary)
        write_junit_xml(run_dir / "junit.xml", summary)
        write_html_report(run_dir / "report.html", summary, {})
    return summary, run_dir


async def run_drill(
    drill: Drill,
    stack: Stack,
    options: RunOptions,
    drill_dir: Path,
    report: StepReport | None = None,
) -> ScenarioResult:
    """One drill on `stack`; never leaves a fault applied or a target running."""
    if stack.provider == "external" and not options.allow_reset:
        raise StackError(
            "refusing to drop audit_log and FLUSHALL on an external stack: "
            "pass --allow-reset if it is a throwaway stack"
        )
    wall_started = time.monotonic()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    drill_dir.mkdir(parents=True, exist_ok=True)
    stack.heal()
    await asyncio.to_thread(reset_state, stack)
    receiver = WebhookReceiver().start()
    spec = TargetSpec(
        command=options.target.command,
        instances=1,
        env={**options.target.env, **drill.target_env},
        startup_timeout_s=options.target.startup_timeout_s,
    )
    targets = TargetGroup(
        spec, stack.urls, drill_dir, extra_env={"ALERT_WEBHOOK_URL": receiver.url}
    )
    injector = FaultInjector.on_stack(stack, targets=lambda: list(targets.instances))
    state = DrillState(stack, targets, injector, receiver, quick=options.quick)
    checks: list[CheckResult] = []
    error: str | None = None
    try:
        await asyncio.to_thread(targets.start)
        await wait_healthy(targets.urls, 20.0)
        env = command_env(state, drill.target_env)
        for number, step in enumerate(drill.steps, 1):
            began = time.monotonic()
            check = await _one_step(state, step, number, env)
            checks.append(check)
            if report is not None:
                report(drill.name, number, step, check, time.monotonic() - began)
            if not check.passed and step.is_incident:
                break  # the rest of the drill would not be about this incident
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        errors = await asyncio.to_thread(injector.revert_all)
        await asyncio.to_thread(targets.stop)
        receiver.stop()
        if errors and error is None:
            error = "fault revert failed: " + "; ".join(errors)
    passed = error is None and len(checks) == len(drill.steps) and all(c.passed for c in checks)
    return ScenarioResult(
        name=drill.name,
        description=drill.title,
        passed=passed,
        checks=tuple(checks),
        wall_s=time.monotonic() - wall_started,
        started_at=started_at,
        run_dir=str(drill_dir),
        log_excerpt=targets.log_excerpt(40),
        error=error,
    )


async def _one_step(state: DrillState, step: Step, number: int, env: dict[str, str]) -> CheckResult:
    name = f"{number:02d} {step.say}"
    if step.is_incident:
        try:
            done = await do_incident(state, dict(step.incident))
        except Exception as exc:
            return CheckResult(name, False, f"incident failed: {type(exc).__name__}: {exc}")
        return CheckResult(name, True, done, {"kind": "incident"})
    outcome = await run_step(state, step, env)
    return CheckResult(
        name,
        outcome.passed,
        outcome.summary,
        {
            "kind": "operator",
            "command": step.run,
            "exit_code": outcome.exit_code,
            "attempts": outcome.attempts,
            "output": outcome.output[-2000:],
        },
        {k: str(v) for k, v in step.expect.items()} | {"until_s": step.until_s},
    )
