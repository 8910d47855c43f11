"""How `stormproof run --jobs N` splits the catalogue into lanes (pure: no stack)."""

from __future__ import annotations

import pytest

from scenarios.run.catalogue import load_catalogue
from scenarios.run.runner import RunOptions, _lanes, run_catalogue
from scenarios.stack import StackError


def test_one_job_is_one_lane_in_the_given_order() -> None:
    """jobs = 1 runs the scenarios as given, one after the other."""
    catalogue = load_catalogue()
    [lane] = _lanes(catalogue, 1)
    assert [scenario for _, scenario in lane] == catalogue


def test_lanes_cover_every_scenario_once_keep_order_and_balance_time() -> None:
    """Two lanes hold every scenario exactly once, each in catalogue order, and their
    lengths differ by no more than the longest scenario."""
    catalogue = load_catalogue()
    lanes = _lanes(catalogue, 2)
    numbers = [number for lane in lanes for number, _ in lane]
    assert sorted(numbers) == list(range(len(catalogue)))
    for lane in lanes:
        assert [number for number, _ in lane] == sorted(number for number, _ in lane)
    totals = [sum(scenario.duration_s for _, scenario in lane) for lane in lanes]
    assert abs(totals[0] - totals[1]) <= max(s.duration_s for s in catalogue)


def test_more_jobs_than_scenarios_is_one_lane_each() -> None:
    """Asking for more lanes than scenarios makes no empty lane."""
    two = load_catalogue()[:2]
    assert [len(lane) for lane in _lanes(two, 5)] == [1, 1]


def test_an_external_stack_refuses_more_than_one_job() -> None:
    """An external stack is one stack: two lanes would reset each other's data."""
    with pytest.raises(StackError, match="jobs = 1"):
        run_catalogue(load_catalogue()[:2], RunOptions(provider="external", jobs=2))


def test_zero_jobs_is_refused() -> None:
    """jobs must be at least 1."""
    with pytest.raises(ValueError, match="at least 1"):
        run_catalogue(load_catalogue()[:1], RunOptions(jobs=0))
