"""What an operator sees, self-tested: an alert that never resolves and metrics that never
move are each flagged by the expectation meant for them, for the intended reason. The
reference passing the same scenarios (alerts and metrics included) is shown in the same
test run by the quick catalogue (tests/integration/test_catalogue.py)."""

from __future__ import annotations

import pytest

from scenarios.report import ScenarioResult
from tests.mutants.conftest import PlannedRun, RunPool
from tests.mutants.test_mutants import run_one
from tests.mutants.variants import OBSERVABILITY_MUTANTS

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REASONS = {
    "alert-never-resolves": "REDIS_MULTIPLE_FAILURES never resolved",
    "metrics-never-move": "stormproof_redis_failures_total did not rise during redis-down",
}


def observability_run(name: str) -> PlannedRun[ScenarioResult]:
    """The run of observability mutant `name` on its own scenario."""
    mutant = OBSERVABILITY_MUTANTS[name]
    return PlannedRun(
        f"observability-{name}", lambda report_dir: run_one(mutant, mutant.scenario, report_dir)
    )


def planned_run(item: pytest.Item) -> PlannedRun[ScenarioResult] | None:
    """The scenario run a test of this module needs (started early by the run pool)."""
    name = getattr(item, "originalname", item.name)
    if name == "test_observability_mutant_is_flagged_for_its_reason":
        return observability_run(item.callspec.params["name"])  # type: ignore[attr-defined]
    return None


@pytest.mark.parametrize("name", sorted(OBSERVABILITY_MUTANTS))
def test_observability_mutant_is_flagged_for_its_reason(name: str, run_pool: RunPool) -> None:
    """The variant fails its scenario at the expectation meant for it, for its reason."""
    mutant = OBSERVABILITY_MUTANTS[name]
    result = run_pool.result(observability_run(name))
    assert result.error is None, result.error
    failed = {check.checker: check.summary for check in result.failed_checks}
    assert mutant.checker in failed, f"{name}: expected {mutant.checker}, failed: {failed}"
    assert REASONS[name] in failed[mutant.checker], failed[mutant.checker]
