"""The mutants' scenario runs, three at a time.

Each mutant test is one scenario run of ~15-25 s that mostly waits (faults, timeouts,
recovery), so the runs of the selected tests are started up front on a small pool and each
test waits for its own result. A test module declares its runs with
`planned_run(item)` (a PlannedRun, a list of them, or None); the pool starts the longest
first (`expected_s`, the quick property searches of 2-3 min), then in collection order, so
no long run is left alone at the end.
Every run has its own stack and report directory, and a checker's verdict does not depend
on a sibling run: the mutant tests assert failures, which load cannot hide.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest

R = TypeVar("R")

WORKERS_ENV = "STORMPROOF_MUTANT_WORKERS"
RESULT_TIMEOUT_S = 900.0  # a queued run waits for the ones before it (~25 s each)
POOL_TEST_TIMEOUT_S = 1800.0
"""pytest-timeout for a test waiting on the pool (make test: ~8 min of runs in all)."""


@dataclass(frozen=True)
class PlannedRun(Generic[R]):
    """One scenario run a test needs: `run(report_dir)` returns its result."""

    key: str
    run: Callable[[Path], R]
    expected_s: float = 25.0
    """About how long it takes: the pool starts the longest first."""


class RunPool:
    """Runs planned scenario runs on `workers` threads, each once, in the order planned."""

    def __init__(self, workers: int, base_dir: Path) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mutant")
        self._futures: dict[str, Future[Any]] = {}
        self._base_dir = base_dir
        self._planned_s = 0.0

    def plan(self, planned: PlannedRun[R]) -> Future[R]:
        """Start `planned` unless it already was; its future."""
        if planned.key not in self._futures:
            report_dir = self._base_dir / planned.key
            report_dir.mkdir(parents=True, exist_ok=True)
            self._futures[planned.key] = self._executor.submit(planned.run, report_dir)
            self._planned_s += planned.expected_s
        return self._futures[planned.key]

    @property
    def wait_bound_s(self) -> float:
        """How long a result may be waited for: every run planned, one after another."""
        return RESULT_TIMEOUT_S + self._planned_s

    def result(self, planned: PlannedRun[R]) -> R:
        """The run's result, waiting (bounded) for it to finish."""
        return self.plan(planned).result(timeout=self.wait_bound_s)

    def close(self) -> None:
        """Drop runs not started; wait for the running ones (their stacks close)."""
        self._executor.shutdown(wait=True, cancel_futures=True)


def _workers() -> int:
    raw = os.environ.get(WORKERS_ENV, "3")
    if not raw.isdigit() or int(raw) < 1:
        raise pytest.UsageError(f"{WORKERS_ENV} must be a positive integer, got {raw!r}")
    return int(raw)


@pytest.fixture(scope="session")
def run_pool(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunPool]:
    """A pool that has already started the runs of every selected mutant test."""
    pool = RunPool(_workers(), tmp_path_factory.mktemp("mutant-runs"))
    runs: list[PlannedRun[Any]] = []
    for item in request.session.items:
        planner = getattr(getattr(item, "module", None), "planned_run", None)
        planned = planner(item) if planner is not None else None
        runs.extend(
            one
            for one in (planned if isinstance(planned, list | tuple) else [planned])
            if one is not None
        )
    for one in sorted(runs, key=lambda run: -run.expected_s):  # stable: collection order
        pool.plan(one)
    try:
        yield pool
    finally:
        pool.close()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that waits on the pool may wait behind the runs planned before its own: it
    gets POOL_TEST_TIMEOUT_S (make test's pool takes ~6 min) unless it sets a timeout of its
    own (the nightly searches do); the pool's `wait_bound_s` bounds the wait itself."""
    for item in items:
        if "run_pool" in getattr(item, "fixturenames", ()) and not item.get_closest_marker(
            "timeout"
        ):
            item.add_marker(pytest.mark.timeout(POOL_TEST_TIMEOUT_S))
