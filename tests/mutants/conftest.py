"""The mutants' scenario runs, two at a time.

Each mutant test is one scenario run of ~15-25 s that mostly waits (faults, timeouts,
recovery), so the runs of the selected tests are started up front on a small pool and each
test waits for its own result. A test module declares its runs with
`planned_run(item)` (a PlannedRun, a list of them, or None); the pool starts them in
collection order.
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


@dataclass(frozen=True)
class PlannedRun(Generic[R]):
    """One scenario run a test needs: `run(report_dir)` returns its result."""

    key: str
    run: Callable[[Path], R]


class RunPool:
    """Runs planned scenario runs on `workers` threads, each once, in the order planned."""

    def __init__(self, workers: int, base_dir: Path) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mutant")
        self._futures: dict[str, Future[Any]] = {}
        self._base_dir = base_dir

    def plan(self, planned: PlannedRun[R]) -> Future[R]:
        """Start `planned` unless it already was; its future."""
        if planned.key not in self._futures:
            report_dir = self._base_dir / planned.key
            report_dir.mkdir(parents=True, exist_ok=True)
            self._futures[planned.key] = self._executor.submit(planned.run, report_dir)
        return self._futures[planned.key]

    def result(self, planned: PlannedRun[R]) -> R:
        """The run's result, waiting (bounded) for it to finish."""
        return self.plan(planned).result(timeout=RESULT_TIMEOUT_S)

    def close(self) -> None:
        """Drop runs not started; wait for the running ones (their stacks close)."""
        self._executor.shutdown(wait=True, cancel_futures=True)


def _workers() -> int:
    raw = os.environ.get(WORKERS_ENV, "2")
    if not raw.isdigit() or int(raw) < 1:
        raise pytest.UsageError(f"{WORKERS_ENV} must be a positive integer, got {raw!r}")
    return int(raw)


@pytest.fixture(scope="session")
def run_pool(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunPool]:
    """A pool that has already started the runs of every selected mutant test."""
    pool = RunPool(_workers(), tmp_path_factory.mktemp("mutant-runs"))
    for item in request.session.items:
        planner = getattr(getattr(item, "module", None), "planned_run", None)
        planned = planner(item) if planner is not None else None
        for one in planned if isinstance(planned, list | tuple) else [planned]:
            if one is not None:
                pool.plan(one)
    try:
        yield pool
    finally:
        pool.close()
