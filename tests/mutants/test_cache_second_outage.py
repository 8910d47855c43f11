"""`max_written_misses` in a second Redis outage, on real Redis, PostgreSQL and Toxiproxy.

The schedule `[redis-down@3+5, redis-down@10+5]` (what a property run draws often) with
the bound the catalogue's redis-down states (`fault = 0`). The reference empties L1 when
it reconnects, so in the second window it misses keys written before that: those misses
are there and not counted, and it passes. A variant whose L1 stops keeping writes after
that reconnect misses keys written since the heal: flagged, for that reason, in the
second window only.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from scenarios.checkers.base import CheckResult
from scenarios.checkers.cache import READ_FS, bounded_written_misses
from scenarios.checkers.phases import phase_of
from scenarios.history import History
from scenarios.run.runner import RunOptions, run_catalogue
from scenarios.run.scenario import parse_schedule
from scenarios.run.schedules import schedule_scenario
from scenarios.target import TargetSpec
from tests.mutants.conftest import PlannedRun, RunPool

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
SCHEDULE = (
    '[{"at_s": 3, "fault": "redis-down", "duration_s": 5},'
    ' {"at_s": 10, "fault": "redis-down", "duration_s": 5}]'
)
MUTANT = "forgets-l1-writes-after-reconnect"
REASON = r"[1-9]\d* misses of written keys in the fault phase \(max 0\)"


def run(report_dir: Path, target: TargetSpec) -> tuple[CheckResult, History]:
    """The schedule with seed 1 (the scenario `stormproof run --schedule` builds): its
    cache-availability result and its history."""
    scenario = schedule_scenario(parse_schedule(SCHEDULE), None)
    assert scenario.expect["cache_availability"]["max_written_misses"] == {"fault": 0}
    options = RunOptions(report_dir=report_dir, target=target, provider="local", seed=1)
    summary, run_dir = run_catalogue([scenario], options)
    [result] = summary.scenarios
    assert result.error is None, result.error
    [check] = [c for c in result.checks if c.checker == "cache-availability"]
    return check, History.load(run_dir / scenario.name / "history.jsonl")


def judged_in(history: History) -> list[int]:
    """The window (1 or 2) of each written miss the bound counts."""
    windows = history.fault_windows()
    reads = history.ops_for(*READ_FS)
    return [
        next(i for i, w in enumerate(windows, 1) if w.contains(op.start))
        for op in bounded_written_misses(history, reads, windows)
        if phase_of(op.start, windows) == "fault"
    ]


VARIANT = TargetSpec(
    command=(sys.executable, "-m", "tests.mutants.serve", MUTANT), env={"PYTHONPATH": str(ROOT)}
)
REFERENCE_RUN = PlannedRun("second-outage-reference", lambda d: run(d, TargetSpec()))
VARIANT_RUN = PlannedRun("second-outage-variant", lambda d: run(d, VARIANT))


def planned_run(item: pytest.Item) -> list[PlannedRun[tuple[CheckResult, History]]]:
    """Both runs of this module's test, started early (side by side) by the run pool."""
    return [REFERENCE_RUN, VARIANT_RUN] if item.name.startswith("test_second_outage") else []


def test_second_outage_misses_old_keys_on_the_reference_and_new_ones_on_the_variant(
    run_pool: RunPool,
) -> None:
    """Reference: window 2 misses keys written before the reconnect (reported, not
    counted), and cache-availability passes. Variant: misses of keys written since the
    heal are counted and fail it, for the intended reason."""
    reference, history = run_pool.result(REFERENCE_RUN)
    assert reference.passed, reference.summary
    assert reference.details["written_misses_by_phase"]["fault"] > 0
    assert judged_in(history) == []

    variant, history = run_pool.result(VARIANT_RUN)
    assert not variant.passed
    assert re.search(REASON, variant.summary), variant.summary
    windows = judged_in(history)
    assert windows and set(windows) == {2}, windows
