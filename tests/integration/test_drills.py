"""The runbook drills: every one passes against the reference (quick), and each broken
variant fails the drill meant for it, at the step meant for it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from scenarios.checkers import CheckResult
from scenarios.drill.spec import load_drills, select_drills
from scenarios.report import ScenarioResult
from scenarios.run.runner import RunOptions
from scenarios.stack import Stack
from scenarios.target import TargetSpec
from tests.mutants.variants import DRILL_MUTANTS, MUTANTS

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def run(
    names: list[str] | None, stack: Stack, report_dir: Path, mutant: str | None = None
) -> dict[str, ScenarioResult]:
    """Run the named drills (None: all) in quick mode; results by drill name."""
    from scenarios.drill.runner import run_drills

    drills = load_drills()
    chosen = drills if names is None else select_drills(drills, names)
    target = TargetSpec()
    if mutant is not None:
        command = (sys.executable, "-m", "tests.mutants.serve", mutant)
        target = TargetSpec(command=command, env={"PYTHONPATH": str(ROOT)})
    options = RunOptions(report_dir=report_dir, target=target, quick=True, provider="local")
    summary, _ = run_drills(chosen, options, stack=stack)
    return {result.name: result for result in summary.scenarios}


def failed_step(result: ScenarioResult, sentence: str) -> CheckResult:
    """The failed check of the step whose sentence is `sentence`."""
    failed = {c.checker.split(" ", 1)[1]: c for c in result.failed_checks}
    assert sentence in failed, f"{result.name}: expected {sentence!r} to fail, failed: {failed}"
    return failed[sentence]


def test_every_drill_passes_against_the_reference(
    stormproof_stack_session: Stack, tmp_path: Path
) -> None:
    """`stormproof drill --all --quick` against the reference: every step of every drill."""
    results = run(None, stormproof_stack_session, tmp_path)
    assert set(results) == {d.name for d in load_drills()}
    for name, result in results.items():
        failed = {c.checker: c.summary for c in result.failed_checks}
        assert result.passed, f"{name}: error={result.error} failed={failed}"


def test_ack_without_durable_write_fails_postgres_outage_and_lost_instance(
    stormproof_stack_session: Stack, tmp_path: Path
) -> None:
    """A journal that acknowledges without persisting: both drills find acknowledged events
    missing from audit_log, and the lost instance's replay finds nothing to replay."""
    mutant = MUTANTS["ack-without-durable-write"].name
    results = run(["postgres-outage", "lost-instance"], stormproof_stack_session, tmp_path, mutant)
    for name in ("postgres-outage", "lost-instance"):
        result = results[name]
        assert result.error is None, result.error
        assert not result.passed
        check = failed_step(result, "audit_log holds every acknowledged event exactly once")
        assert "acknowledged events lost" in check.summary, check.summary
    replay = failed_step(results["lost-instance"], "Replay the directory from another machine")
    assert "replayed" in replay.summary, replay.summary


def test_alert_that_never_resolves_fails_the_redis_drill(
    stormproof_stack_session: Stack, tmp_path: Path
) -> None:
    """Alerts that fire but never send their resolution: the Redis drill fails at the step
    that waits for REDIS_MULTIPLE_FAILURES to resolve, and only there."""
    mutant = DRILL_MUTANTS["alert-never-resolves"]
    result = run([mutant.scenario], stormproof_stack_session, tmp_path, mutant.name)[
        mutant.scenario
    ]
    assert result.error is None, result.error
    check = failed_step(result, mutant.checker)
    assert "firing = True, expected False" in check.summary, check.summary
    assert len(result.failed_checks) == 1, [c.checker for c in result.failed_checks]
