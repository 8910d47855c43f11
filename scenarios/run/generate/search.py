"""The search: Hypothesis draws schedules, a runner runs each, failures shrink.

- `examples`: draw that many schedules (one round); with `time_budget_s`, keep drawing in
  rounds of `round_examples` (seed, seed+1, ...) until the budget is spent. Every round
  that fails yields one shrunk `Failure`, and the search goes on with the next round.
- Re-runs: once a round has seen a failure, a run that passes is re-run up to `reruns`
  times and counts as failing if any run failed ("failed at least once" is a failure).
- Shrinking makes at most `max_shrink_runs` real runs; after that every new candidate
  counts as passing without running, so the smallest failure found so far is the result.
  That is the bound, not Hypothesis's own wall-clock limit on shrinking (300 s, about
  eight of our runs: `max_shrink_s` replaces it, unbounded by default).
- Then, as delta debugging does at its finest grain, each fault of the result is tried
  alone (`1 + reruns` runs each, all of them): of those that fail, the one that failed in
  most runs, then by most (`Outcome.strength`), is the result. If none fails alone, each
  fault is tried away (`1 + reruns` runs at most) and a removal that still fails is kept.
  Hypothesis may spend its runs on parameters and leave faults the failure does not
  need, and it shrinks a fault toward where the failure turns into a chance (a latency
  just over a timeout): so a removal judged by pass/fail alone can keep chance failures
  and drop the fault that causes most of it, and the first fault that fails alone may
  replay as a pass. At most two tries per fault (at most 6); with two faults the two
  passes are the same candidates.
- A schedule that failed once is a failure from then on (Hypothesis's candidates that map
  to it are not run again). At the end the minimal schedule is run again, up to
  `1 + reruns` times: if it never fails again, the `Failure` is `flaky=True`; so is a
  Hypothesis `Flaky` (never a traceback).
- The shrinking steps (each smaller failing schedule, original first) are kept for the
  report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from hypothesis import HealthCheck, Phase, given, reject, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Flaky
from hypothesis.internal.conjecture import engine as hypothesis_engine

from scenarios.run.generate.model import GeneratedSchedule
from scenarios.run.generate.space import ScheduleSpace, schedules


@dataclass(frozen=True)
class Outcome:
    """One run of one schedule: passed or why not, and where its report is."""

    passed: bool
    why: str = ""
    where: str = ""
    strength: float = 1.0
    """How much a failing run failed by (e.g. events lost or written twice): of faults that
    each fail alone, the search keeps the one that fails most often and by most."""


Runner = Callable[[GeneratedSchedule, Path], Outcome]
"""Runs one schedule (its directory given) and says how it went."""
Listener = Callable[[GeneratedSchedule, Outcome, str], None]
"""Told of every real run: the schedule, its outcome, the phase (generate/shrink/confirm)."""


@dataclass(frozen=True)
class SearchSettings:
    """How long to search, with which seed, how hard to shrink and re-run."""

    examples: int = 20
    seed: int = 0
    shrink: bool = True
    reruns: int = 1
    max_shrink_runs: int = 24
    max_shrink_s: float | None = None
    """Hypothesis's wall-clock limit on shrinking (None: none, `max_shrink_runs` bounds it)."""
    time_budget_s: float | None = None
    round_examples: int = 10
    space: ScheduleSpace = field(default_factory=ScheduleSpace)


@dataclass(frozen=True)
class Step:
    """A failing schedule met on the way (the first is the original one)."""

    schedule: GeneratedSchedule
    why: str
    where: str
    strength: float = 1.0


@dataclass(frozen=True)
class Failure:
    """A round's failure: the minimal schedule, why, the shrinking steps, flaky or not."""

    minimal: GeneratedSchedule
    why: str
    where: str
    steps: tuple[Step, ...]
    flaky: bool
    runs: int


@dataclass(frozen=True)
class SearchResult:
    """What a search did: real runs, rounds, failures, wall time."""

    runs: int
    rounds: int
    failures: tuple[Failure, ...]
    wall_s: float

    @property
    def passed(self) -> bool:
        """No failure, flaky or not."""
        return not self.failures


@contextmanager
def _shrink_time_limit(seconds: float | None) -> Iterator[None]:
    """Hypothesis stops shrinking after `MAX_SHRINKING_SECONDS` (300 s) of wall time, which
    is written to be patched by "users who need to keep on shrinking": a run here takes
    20-50 s, so shrinking would stop after about eight runs, long before `max_shrink_runs`
    (a 30-example search kept a SIGSTOP the failure did not need). Set for one round (its
    fault removals and confirmation runs included)."""
    saved = hypothesis_engine.MAX_SHRINKING_SECONDS
    hypothesis_engine.MAX_SHRINKING_SECONDS = 10**9 if seconds is None else seconds  # type: ignore[assignment]
    try:
        yield
    finally:
        hypothesis_engine.MAX_SHRINKING_SECONDS = saved


class _PropertyFailed(AssertionError):
    """A schedule failed (Hypothesis shrinks on this)."""


def _fail(why: str) -> NoReturn:
    """Raise the failure from one place: Hypothesis tells failures apart by where they were
    raised, and a known failure must look like the run it stands for."""
    raise _PropertyFailed(why)


@dataclass
class _Round:
    """Book-keeping of one Hypothesis round."""

    steps: list[Step] = field(default_factory=list)
    failed: dict[str, Step] = field(default_factory=dict)
    shrink_runs: int = 0
    valid: int = 0
    runs: int = 0
    last_failed: str = ""
    ran: set[str] = field(default_factory=set)

    @property
    def failing(self) -> bool:
        return bool(self.failed)


def _key(schedule: GeneratedSchedule) -> str:
    return f"{schedule.instances}:{schedule.schedule_json()}"


class Search:
    """Runs the property search (`run()`); `runner` runs one schedule for real."""

    def __init__(
        self,
        config: SearchSettings,
        runner: Runner,
        report_dir: Path,
        *,
        listener: Listener | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._runner = runner
        self._dir = report_dir
        self._listen = listener or (lambda s, o, p: None)
        self._monotonic = monotonic
        self._count = 0
        self._earlier: set[str] = set()
        """Schedules run in earlier rounds: every round starts from the simplest schedule,
        which need not run (or be reported) again."""

    def run(self) -> SearchResult:
        """Search until the examples or the time budget are spent; never raises on a failure."""
        started = self._monotonic()
        budget = self._config.time_budget_s
        deadline = None if budget is None else started + budget
        failures: list[Failure] = []
        rounds = runs = 0
        while True:
            examples = self._config.examples if deadline is None else self._config.round_examples
            state = _Round()
            failure = self._round(self._config.seed + rounds, examples, deadline, state)
            rounds += 1
            runs += state.runs
            self._earlier |= state.ran
            if failure is not None:
                failures.append(failure)
            if deadline is None or self._monotonic() >= deadline:
                break
        return SearchResult(runs, rounds, tuple(failures), self._monotonic() - started)

    def _run_once(self, schedule: GeneratedSchedule, state: _Round, phase: str) -> Outcome:
        where = self._dir / f"example-{self._count}"
        self._count += 1
        state.runs += 1
        state.ran.add(_key(schedule))
        outcome = self._runner(schedule, where)
        self._listen(schedule, outcome, phase)
        return outcome

    def _round(
        self, seed: int, examples: int, deadline: float | None, state: _Round
    ) -> Failure | None:
        config = self._config
        phases = [Phase.generate, *([Phase.shrink] if config.shrink else [])]

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=False,
            phases=phases,
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
            print_blob=False,
        )
        @given(schedule=schedules(config.space, seed))
        def prop(schedule: GeneratedSchedule) -> None:
            key = _key(schedule)
            if key in state.failed:  # failed at least once: a failure, no need to run again
                state.last_failed = key
                _fail(state.failed[key].why)
            if state.failing:
                if state.shrink_runs >= config.max_shrink_runs:
                    return  # shrink budget spent: nothing new counts as smaller
            elif deadline is not None and state.valid and self._monotonic() >= deadline:
                reject()
            if key in self._earlier:
                return  # run (and, if it failed, reported) in an earlier round
            state.valid += 1
            phase = "shrink" if state.failing else "generate"
            tries = 1 + (config.reruns if state.failing else 0)
            for _ in range(tries):
                if state.failing:
                    state.shrink_runs += 1
                outcome = self._run_once(schedule, state, phase)
                if not outcome.passed:
                    step = Step(schedule, outcome.why, outcome.where, outcome.strength)
                    if key not in state.failed:
                        state.steps.append(step)
                    state.failed[key] = step
                    state.last_failed = key
                    _fail(outcome.why)

        with _shrink_time_limit(config.max_shrink_s):
            try:
                hypothesis_seed(seed)(prop)()
            except _PropertyFailed:
                if config.shrink and not self._one_fault_alone(state):
                    self._drop_unneeded_faults(state)
                return self._failure(state, flaky=not self._reproduces(state))
            except Flaky:
                return self._failure(state, flaky=True)
        return None

    def _tally(
        self, candidate: GeneratedSchedule, state: _Round, *, until_failure: bool = False
    ) -> tuple[int, float]:
        """Run `candidate` `1 + reruns` times (`until_failure`: stop at the first failure):
        how many runs failed, by how much in all. A schedule run before is not run again
        (a known failure counts once). A failure is recorded, not yet a step of the report."""
        key = _key(candidate)
        if key in state.failed:
            return 1, state.failed[key].strength
        if key in state.ran or key in self._earlier:
            return 0, 0.0
        failures, strength = 0, 0.0
        for _ in range(1 + self._config.reruns):
            outcome = self._run_once(candidate, state, "shrink")
            if not outcome.passed:
                failures, strength = failures + 1, strength + outcome.strength
                state.failed.setdefault(
                    key, Step(candidate, outcome.why, outcome.where, outcome.strength)
                )
                if until_failure:
                    break
        return failures, strength

    def _one_fault_alone(self, state: _Round) -> bool:
        """Try each fault of the minimal schedule alone (three faults or more: with two,
        the removals are the same candidates); the one that failed most often, then by
        most, becomes the minimal. False if none failed alone."""
        current = state.failed[state.last_failed].schedule
        if len(current.faults) < 3:
            return False
        best: tuple[int, float, str] | None = None
        for fault in current.faults:
            candidate = GeneratedSchedule((fault,), current.instances, current.seed)
            failures, strength = self._tally(candidate, state)
            if failures and (best is None or (failures, strength) > best[:2]):
                best = (failures, strength, _key(candidate))
        if best is None:
            return False
        state.last_failed = best[2]
        return True

    def _drop_unneeded_faults(self, state: _Round) -> None:
        """Try the minimal schedule without each of its faults in turn; keep each removal
        that still fails (failed at least once in `1 + reruns` runs)."""
        current = state.failed[state.last_failed].schedule
        i = 0
        while len(current.faults) > 1 and i < len(current.faults):
            candidate = GeneratedSchedule(
                current.faults[:i] + current.faults[i + 1 :], current.instances, current.seed
            )
            failures, _ = self._tally(candidate, state, until_failure=True)
            if not failures:
                i += 1  # this fault is needed
                continue
            state.last_failed, current = _key(candidate), candidate
            if state.failed[state.last_failed] not in state.steps:
                state.steps.append(state.failed[state.last_failed])

    def _reproduces(self, state: _Round) -> bool:
        """Run the minimal schedule again (up to 1 + reruns times): does it fail again?"""
        minimal = state.failed[state.last_failed]
        for _ in range(1 + self._config.reruns):
            outcome = self._run_once(minimal.schedule, state, "confirm")
            if not outcome.passed:
                return True
        return False

    def _failure(self, state: _Round, *, flaky: bool) -> Failure:
        last = state.failed[state.last_failed]
        steps = [s for s in state.steps if _key(s.schedule) != state.last_failed]
        return Failure(last.schedule, last.why, last.where, (*steps, last), flaky, state.runs)
