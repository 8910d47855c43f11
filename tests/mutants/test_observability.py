"""What an operator sees, self-tested: the reference passes redis-down and postgres-down;
an alert that never resolves and metrics that never move are each flagged by the
expectation meant for them, for the intended reason, in the same test run."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenarios.run.catalogue import load_catalogue, select
from scenarios.run.runner import RunOptions, run_catalogue
from tests.mutants.test_mutants import run_one
from tests.mutants.variants import OBSERVABILITY_MUTANTS

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REASONS = {
    "alert-never-resolves": "REDIS_MULTIPLE_FAILURES never resolved",
    "metrics-never-move": "stormproof_redis_failures_total did not rise during redis-down",
}


def test_reference_passes_the_alerts_and_metrics_expectations(tmp_path: Path) -> None:
    """The unbroken reference: alerts fire and resolve in time, dashboards agree (the
    scenarios' other expectations are the catalogue test's)."""
    scenarios = select(load_catalogue(), ["redis-down", "postgres-down"])
    summary, _ = run_catalogue(scenarios, RunOptions(report_dir=tmp_path, provider="local"))
    for result in summary.scenarios:
        assert result.error is None, result.error
        observed = {c.checker: c for c in result.checks if c.checker in ("alerts", "metrics")}
        assert set(observed) == {"alerts", "metrics"}, [c.checker for c in result.checks]
        for check in observed.values():
            assert check.passed, f"{result.name}: {check.checker}: {check.summary}"


@pytest.mark.parametrize("name", sorted(OBSERVABILITY_MUTANTS))
def test_observability_mutant_is_flagged_for_its_reason(name: str, tmp_path: Path) -> None:
    """The variant fails its scenario at the expectation meant for it, for its reason."""
    mutant = OBSERVABILITY_MUTANTS[name]
    result = run_one(mutant, mutant.scenario, tmp_path)
    assert result.error is None, result.error
    failed = {check.checker: check.summary for check in result.failed_checks}
    assert mutant.checker in failed, f"{name}: expected {mutant.checker}, failed: {failed}"
    assert REASONS[name] in failed[mutant.checker], failed[mutant.checker]
