"""The reference passes the replicated-Redis scenarios that the `queue-without-wait`
mutant fails (issue 18). `make test` shows this through its quick catalogue run; this
test runs just these scenarios, so that the mutant and the reference can be judged in one
short invocation:

    pytest tests/mutants/test_mutants.py tests/mutants/test_replicated_reference.py \
        -k "queue-without-wait or replicated" -m "nightly or not nightly"
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scenarios.run.catalogue import load_catalogue, select
from scenarios.run.runner import RunOptions, run_catalogue

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.nightly]


def test_reference_passes_the_replicated_scenarios(tmp_path: Path) -> None:
    """redis-failover and redis-partition pass against the reference, quick mode: nothing
    acknowledged lost or doubled, and the queue taken up again after the failover."""
    scenarios = select(load_catalogue(), ["redis-failover", "redis-partition"])
    summary, _ = run_catalogue(scenarios, RunOptions(report_dir=tmp_path, provider="local"))
    for result in summary.scenarios:
        assert result.error is None, (result.name, result.error)
        assert result.passed, (result.name, {c.checker: c.summary for c in result.failed_checks})
        [audit] = [c for c in result.checks if c.checker == "audit"]
        failover = audit.details["queue_failover"]
        assert isinstance(failover, dict) and failover["failover_s"] is not None, failover
