"""The property search with stand-in runners (pure logic: which schedule fails is a rule
here; the real runs are in tests/mutants/test_property_mutants.py): shrinking goes to
fewer, shorter, later faults and fewer instances; re-runs; flaky; time budgets; reports."""

from __future__ import annotations

import io
import json
import random
import time
from pathlib import Path
from xml.etree import ElementTree

from hypothesis.internal.conjecture import engine as hypothesis_engine

from scenarios.checkers.base import CheckResult
from scenarios.run.generate.model import GeneratedSchedule
from scenarios.run.generate.report import write_property_report
from scenarios.run.generate.search import Outcome, Search, SearchSettings
from scenarios.run.schedules import failure_strength, report_outcome


def _two_redis_faults(schedule: GeneratedSchedule, where: Path) -> Outcome:
    redis = [f for f in schedule.faults if f.fault.target == "redis"]
    return Outcome(len(redis) < 2, "audit: 3 acknowledged events lost", str(where))


def _two_or_more(schedule: GeneratedSchedule, where: Path) -> Outcome:
    return Outcome(len(schedule.faults) < 2, "audit: dup", str(where))


def test_a_failure_shrinks_to_fewer_shorter_later_faults_and_one_instance(
    tmp_path: Path,
) -> None:
    """A rule "fails with two Redis faults" shrinks to exactly two Redis faults of the
    plainest kind (down), each of the shortest duration, starting as late as allowed, on
    one instance; the steps start at the original and end at the minimal."""
    config = SearchSettings(examples=30, seed=1, max_shrink_runs=500)
    result = Search(config, _two_redis_faults, tmp_path).run()
    [failure] = result.failures
    minimal = failure.minimal
    assert not failure.flaky
    assert [f.fault.name for f in minimal.faults] == ["redis-down", "redis-down"]
    assert minimal.instances == 1
    assert all(f.duration_s == config.space.min_duration_s for f in minimal.faults)
    assert minimal.faults[0].at_s == config.space.latest_start_s
    assert failure.steps[-1].schedule == minimal
    assert len(failure.steps[0].schedule.faults) >= len(minimal.faults)
    assert len(failure.steps) > 1


def test_without_failures_the_search_runs_every_example(tmp_path: Path) -> None:
    """A rule that never fails: every example is run once, no failure is reported."""
    seen: list[GeneratedSchedule] = []

    def runner(schedule: GeneratedSchedule, where: Path) -> Outcome:
        seen.append(schedule)
        return Outcome(True)

    result = Search(SearchSettings(examples=12, seed=3), runner, tmp_path).run()
    assert result.passed and result.runs == len(seen) == 12
    assert len({s.schedule_json() for s in seen}) > 6


def test_a_failure_seen_once_while_shrinking_is_a_failure(tmp_path: Path) -> None:
    """A schedule that fails on one run in three: with re-runs, each shrink candidate is
    tried up to three times and failing once counts; the result is a (non-flaky) failure
    of a schedule that did fail."""
    rng = random.Random(7)
    failed: set[str] = set()

    def runner(schedule: GeneratedSchedule, where: Path) -> Outcome:
        bad = len(schedule.faults) >= 2 and rng.random() < 0.34
        if bad:
            failed.add(schedule.schedule_json())
        return Outcome(not bad, "breaker: never opened", str(where))

    config = SearchSettings(examples=40, seed=2, reruns=2, max_shrink_runs=300)
    result = Search(config, runner, tmp_path).run()
    [failure] = result.failures
    assert failure.minimal.schedule_json() in failed
    assert len(failure.minimal.faults) >= 2


def test_a_failure_that_does_not_reproduce_is_one_flaky_line(tmp_path: Path) -> None:
    """A failure that never comes back: Hypothesis's Flaky ends as one line naming it
    flaky with the replay command of the failing run, exit 1, no traceback."""
    calls = 0

    def runner(schedule: GeneratedSchedule, where: Path) -> Outcome:
        nonlocal calls
        calls += 1
        return Outcome(calls != 2, "audit: 1 acknowledged event lost", str(where))

    config = SearchSettings(examples=10, seed=4, reruns=1)
    result = Search(config, runner, tmp_path).run()
    [failure] = result.failures
    assert failure.flaky
    out = io.StringIO()
    assert report_outcome(result, config, ["--target-cmd", "my svc"], out) == 1
    last = out.getvalue().strip().splitlines()[-1]
    assert last.startswith("FLAKY: ") and "replay: stormproof run --quick --schedule" in last
    assert "--target-cmd 'my svc'" in last
    assert "Traceback" not in out.getvalue()


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_time_budget_keeps_drawing_in_rounds_and_reports_each_failure(
    tmp_path: Path,
) -> None:
    """With a budget, rounds follow one another until it is spent (each run costs 20 s on
    the injected clock), a schedule run in an earlier round is not run again; every
    failing round leaves one shrunk failure; the report files hold every failure with its
    replay command and its steps."""
    clock = _Clock()
    ran: list[str] = []

    def runner(schedule: GeneratedSchedule, where: Path) -> Outcome:
        clock.now += 20.0
        ran.append(schedule.schedule_json())
        return _two_redis_faults(schedule, where)

    config = SearchSettings(seed=1, time_budget_s=3600, round_examples=5, max_shrink_runs=10)
    result = Search(config, runner, tmp_path, monotonic=clock).run()
    assert result.rounds >= 3
    # every round starts from the simplest schedule: it runs in the first round only
    assert ran.count(ran[0]) == 1
    assert clock.now >= 3600 and clock.now < 3600 + 20 * 20
    assert len(result.failures) >= 1
    html = write_property_report(tmp_path, result, config, ["--target-cmd", "svc"])
    data = json.loads((tmp_path / "property.json").read_text())
    assert len(data["failures"]) == len(result.failures)
    for failure, saved in zip(result.failures, data["failures"], strict=True):
        assert saved["replay"] == failure.minimal.replay_command(["--target-cmd", "svc"])
        assert GeneratedSchedule.from_json(saved["minimal"]) == failure.minimal
    suite = ElementTree.parse(tmp_path / "junit.xml").getroot()
    assert suite.get("failures") == str(len(result.failures))
    text = html.read_text()
    assert "original" in text and "minimal" in text and "Shrinking steps" in text


def test_slow_runs_shrink_until_the_run_budget_not_a_wall_clock_limit(tmp_path: Path) -> None:
    """Runs that take time (here 20 ms, on the real clock Hypothesis reads) shrink until
    `max_shrink_runs` is spent: Hypothesis's own wall-clock limit on shrinking (300 s,
    about eight real runs of ours) is lifted. With a limit (`max_shrink_s`, here 50 ms,
    the same cut-off scaled down) shrinking stops after a few runs, short of minimal."""

    limits_seen: set[float] = set()

    def slow(schedule: GeneratedSchedule, where: Path) -> Outcome:
        time.sleep(0.02)
        return _two_redis_faults(schedule, where)

    def shrink_runs(max_shrink_s: float | None) -> tuple[int, GeneratedSchedule]:
        config = SearchSettings(
            examples=30, seed=1, max_shrink_runs=40, reruns=0, max_shrink_s=max_shrink_s
        )
        generated: list[str] = []

        def listen(schedule: GeneratedSchedule, outcome: Outcome, phase: str) -> None:
            generated.append(phase)
            if phase == "shrink":
                limits_seen.add(hypothesis_engine.MAX_SHRINKING_SECONDS)

        result = Search(config, slow, tmp_path / str(max_shrink_s), listener=listen).run()
        [failure] = result.failures
        return generated.count("shrink"), failure.minimal

    before = hypothesis_engine.MAX_SHRINKING_SECONDS
    unlimited, minimal = shrink_runs(None)
    assert limits_seen and min(limits_seen) > 10**6  # not Hypothesis's 300 s while shrinking
    limited, _ = shrink_runs(0.05)
    assert before == hypothesis_engine.MAX_SHRINKING_SECONDS  # restored after each round
    assert unlimited > limited, (unlimited, limited)
    assert [f.fault.name for f in minimal.faults] == ["redis-down", "redis-down"]


def test_faults_the_failure_does_not_need_are_dropped_after_shrinking(tmp_path: Path) -> None:
    """When Hypothesis's shrinking budget is spent on other things (here none at all), each
    fault of the result is tried alone, then away: the minimal keeps exactly the two Redis
    faults the rule needs, and this costs at most two runs per fault of the original."""
    phases: list[str] = []
    config = SearchSettings(examples=30, seed=1, max_shrink_runs=0, reruns=0)
    result = Search(
        config, _two_redis_faults, tmp_path, listener=lambda s, o, p: phases.append(p)
    ).run()
    [failure] = result.failures
    original, minimal = failure.steps[0].schedule, failure.minimal
    assert len(original.faults) > 2, original.describe()
    assert [f.fault.target for f in minimal.faults] == ["redis", "redis"]
    kept = [f.to_json() for f in minimal.faults]
    assert all(f in [g.to_json() for g in original.faults] for f in kept)  # only removals
    assert phases.count("shrink") <= 2 * len(original.faults)  # alone, then away
    assert not failure.flaky


def test_a_fault_that_fails_alone_is_tried_before_removals(tmp_path: Path) -> None:
    """Any PostgreSQL fault fails the rule here; so do any two faults (a stand-in for the
    weak chance failures that a real search meets: one duplicate instead of dozens).
    Removing faults one by one from seed 26's first failure (a PostgreSQL fault first,
    then five Redis faults) keeps failing all the way down to two Redis faults, which
    drops the PostgreSQL fault; trying each fault alone first ends at that fault, as it
    was drawn."""

    def postgres_or_two(schedule: GeneratedSchedule, where: Path) -> Outcome:
        postgres = any(f.fault.target == "postgres" for f in schedule.faults)
        return Outcome(not (postgres or len(schedule.faults) >= 2), "audit: dup", str(where))

    class RemovalsOnly(Search):
        def _one_fault_alone(self, state: object) -> bool:
            return False

    config = SearchSettings(examples=30, seed=26, max_shrink_runs=0, reruns=0)
    [failure] = Search(config, postgres_or_two, tmp_path / "alone").run().failures
    original = failure.steps[0].schedule
    assert [f.fault.target for f in original.faults] == ["postgres"] + ["redis"] * 5
    assert failure.minimal.faults == original.faults[:1]
    assert not failure.flaky
    [removed] = RemovalsOnly(config, postgres_or_two, tmp_path / "removals").run().failures
    assert [f.fault.target for f in removed.minimal.faults] == ["redis", "redis"]


def test_of_faults_that_fail_alone_the_one_failing_most_often_then_most_is_kept(
    tmp_path: Path,
) -> None:
    """Any two faults fail here (the chance failures). Alone, a fault of the first failure
    fails too, the way a threshold defect does: the PostgreSQL fault in every run by 2
    findings, a Redis fault that Hypothesis shrank to the edge of the defect by 100 in
    its first run and not in the next. The PostgreSQL fault is kept: it replays."""

    config = SearchSettings(examples=30, seed=26, max_shrink_runs=0, reruns=1)
    [first] = Search(config, _two_or_more, tmp_path / "first").run().failures
    original = first.steps[0].schedule.faults
    alone_runs: dict[str, int] = {}

    def threshold_defect(schedule: GeneratedSchedule, where: Path) -> Outcome:
        if len(schedule.faults) != 1 or schedule.faults[0] not in original:
            return _two_or_more(schedule, where)
        key = schedule.schedule_json()
        alone_runs[key] = alone_runs.get(key, 0) + 1
        if schedule.faults[0].fault.target == "postgres":
            return Outcome(False, "audit: 2 duplicated", str(where), strength=2.0)
        first_run = alone_runs[key] == 1
        return Outcome(not first_run, "audit: 100 duplicated", str(where), strength=100.0)

    [failure] = Search(config, threshold_defect, tmp_path / "second").run().failures
    assert failure.steps[0].schedule.faults == original
    assert [f.fault.target for f in original].count("postgres") == 1
    assert [f.fault.target for f in failure.minimal.faults] == ["postgres"]
    assert set(alone_runs.values()) >= {2}  # every fault alone ran 1 + reruns times
    assert len(alone_runs) == len(original)
    # the report's steps lead to the fault kept, not through the ones left behind
    assert [len(s.schedule.faults) for s in failure.steps] == [len(original), 1]


def test_of_faults_that_fail_alone_as_often_the_strongest_is_kept(tmp_path: Path) -> None:
    """Any two faults fail; every fault of the first failure fails alone in every run too,
    by as many findings as it lasts seconds: the longest is kept, not the first."""

    config = SearchSettings(examples=30, seed=26, max_shrink_runs=0, reruns=0)
    [first] = Search(config, _two_or_more, tmp_path / "first").run().failures
    original = first.steps[0].schedule.faults

    def longest_wins(schedule: GeneratedSchedule, where: Path) -> Outcome:
        if len(schedule.faults) != 1 or schedule.faults[0] not in original:
            return _two_or_more(schedule, where)
        strength = schedule.faults[0].duration_s
        return Outcome(False, "audit: dup", str(where), strength=strength)

    [failure] = Search(config, longest_wins, tmp_path / "second").run().failures
    [kept] = failure.minimal.faults
    assert failure.steps[0].schedule.faults == original and kept in original
    longest = max(f.duration_s for f in original)
    assert kept.duration_s == longest and original[0].duration_s < longest


def test_the_strength_of_a_failure_is_its_findings_over_their_thresholds() -> None:
    """Counted findings over their thresholds (45 written twice); a count without a
    threshold (events recovered) is no finding; a failing check without counts is 1."""
    audit = CheckResult(
        "audit",
        False,
        "45 duplicated",
        {"counts": {"lost": 0, "duplicated": 45, "recovered_after_fail": 224}},
        {"lost": 0, "duplicated": 0, "min_evidence": 20},
    )
    latency = CheckResult("latency", False, "p99 900 ms", {}, {"p99_ms": 500})
    within = CheckResult(
        "audit", False, "insufficient evidence", {"counts": {"lost": 0}}, {"lost": 0}
    )
    assert failure_strength([audit]) == 45.0
    assert failure_strength([audit, latency, within]) == 47.0
    assert failure_strength([]) == 0.0


def test_the_shrink_budget_bounds_the_real_runs(tmp_path: Path) -> None:
    """With `max_shrink_runs`, shrinking makes at most that many real runs (plus the
    generation's), and still reports a schedule that really failed."""
    failed: set[str] = set()

    def runner(schedule: GeneratedSchedule, where: Path) -> Outcome:
        outcome = _two_redis_faults(schedule, where)
        if not outcome.passed:
            failed.add(schedule.schedule_json())
        return outcome

    config = SearchSettings(examples=30, seed=1, max_shrink_runs=3)
    result = Search(config, runner, tmp_path).run()
    [failure] = result.failures
    assert failure.minimal.schedule_json() in failed
    generation_runs = result.runs - 3
    assert 1 <= generation_runs <= 30
