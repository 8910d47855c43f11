"""The harness's self-test: every broken variant is flagged by the checker meant for it,
and the unbroken reference passes the same scenarios."""

from __future__ import annotations

import re
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from scenarios.report import ScenarioResult
from scenarios.run.catalogue import load_catalogue, select
from scenarios.run.runner import RunOptions, run_catalogue
from scenarios.target import TargetSpec
from tests.mutants.conftest import PlannedRun, RunPool
from tests.mutants.variants import MUTANTS, Mutant

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def run_one(
    mutant: Mutant, scenario_name: str, report_dir: Path, *, quick: bool = True
) -> ScenarioResult:
    [scenario] = select(load_catalogue(), [scenario_name])
    command = (sys.executable, "-m", "tests.mutants.serve", mutant.name)
    scenario = replace(scenario, stack={**scenario.stack, **mutant.stack})
    options = RunOptions(
        report_dir=report_dir,
        target=TargetSpec(command=command, env={"PYTHONPATH": str(ROOT)}),
        provider="local",
        quick=quick,
    )
    summary, _ = run_catalogue([scenario], options)
    [result] = summary.scenarios
    return result


def mutant_run(name: str, *, quick: bool = True) -> PlannedRun[ScenarioResult]:
    """The run of mutant `name` on its own scenario."""
    mutant = MUTANTS[name]
    mode = "quick" if quick else "full"
    return PlannedRun(
        f"{name}-{mode}",
        lambda report_dir: run_one(mutant, mutant.scenario, report_dir, quick=quick),
        expected_s=25.0 if quick else 70.0,
    )


FULL_MODE_MUTANT = mutant_run("no-l1-flush-on-reconnect", quick=False)


def planned_run(item: pytest.Item) -> PlannedRun[ScenarioResult] | None:
    """The scenario run a test of this module needs (started early by the run pool)."""
    name = getattr(item, "originalname", item.name)
    if name == "test_mutant_is_flagged_by_its_checker":
        return mutant_run(item.callspec.params["name"])  # type: ignore[attr-defined]
    if name == "test_stale_l1_after_reconnect_is_flagged_in_full_mode_after_the_heal":
        return FULL_MODE_MUTANT
    return None


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_mutant_is_flagged_by_its_checker(name: str, run_pool: RunPool) -> None:
    """The variant fails its scenario, and the checker meant for it is among the failures,
    for the intended reason (its summary matches the mutant's `reason`)."""
    mutant = MUTANTS[name]
    result = run_pool.result(mutant_run(name))
    failed = {check.checker: check.summary for check in result.failed_checks}
    assert result.error is None, result.error
    assert not result.passed, f"{name} passed {mutant.scenario}: nothing caught it"
    assert mutant.checker in failed, f"{name}: expected {mutant.checker}, failed: {failed}"
    if mutant.reason is not None:
        assert re.search(mutant.reason, failed[mutant.checker]), failed[mutant.checker]

    if mutant.only:  # nothing else sees it: the intended checker is the one that must
        assert set(failed) == {mutant.checker}, failed

    if mutant.loses:  # flagged for the intended reason: acknowledged events lost
        [audit] = [check for check in result.failed_checks if check.checker == "audit"]
        counts = audit.details["counts"]
        assert isinstance(counts, dict) and int(counts["lost"]) > 0, audit.summary


def test_stale_l1_after_reconnect_is_flagged_in_full_mode_after_the_heal(run_pool: RunPool) -> None:
    """Full mode (every time x3: a 12 s cut-off): the L1 kept after reconnecting is still
    flagged, for the after-heal reason, while the stale reads during the longer cut-off
    are allowed (the reference passes the same full-mode scenario in
    tests/integration/test_catalogue_full.py)."""
    mutant = MUTANTS["no-l1-flush-on-reconnect"]
    result = run_pool.result(FULL_MODE_MUTANT)
    failed = {check.checker: check for check in result.failed_checks}
    assert result.error is None, result.error
    assert "staleness" in failed, {c.checker: c.summary for c in result.checks}
    assert mutant.reason is not None
    assert re.search(mutant.reason, failed["staleness"].summary), failed["staleness"].summary
    assert failed["staleness"].details["stale_after_heal"]["count"] > 0


# The unbroken reference passing these same scenarios is shown by the quick catalogue run
# (tests/integration/test_catalogue.py), which runs every one of them, and in full mode by
# tests/integration/test_catalogue_full.py, in the same `make test`.


def test_every_mutant_targets_a_catalogue_scenario() -> None:
    """Each mutant names a scenario and a checker that the catalogue really has."""
    catalogue = {s.name: s for s in load_catalogue()}
    for mutant in MUTANTS.values():
        assert mutant.scenario in catalogue
        checkers = {c.name for c in catalogue[mutant.scenario].checkers()}
        assert mutant.checker in checkers, (mutant.name, checkers)
        assert mutant.reason, f"{mutant.name}: no intended reason to assert"
