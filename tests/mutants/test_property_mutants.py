"""`stormproof property` finds what no single catalogue fault shows, on real Redis,
PostgreSQL and Toxiproxy: a variant that loses audit events from a dependency's second
outage on, and one that writes an event twice when a PostgreSQL reply is lost after the
commit. Each prints a shrunk schedule and a replay command, and that command, run on its
own, exits 1. The same replay against the reference passes the checker that flagged the variant.

The full setting (`--examples 30 --seed 1`, 24 shrinking runs; the slow-commit variant's
focused on PostgreSQL latency) is marked nightly; the quick one, in `make test`, focuses
the search and uses a seed that meets a failing schedule at the second example, with a
small shrinking budget. The searches run in the mutant run pool.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from scenarios.run.scenario import parse_schedule
from tests.mutants.conftest import PlannedRun, RunPool
from tests.mutants.variants import PROPERTY_MUTANTS

pytestmark = [pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 3600


@dataclass(frozen=True)
class Setting:
    """A property run's size: examples, seed, shrinking budget, re-runs."""

    examples: int
    seed: int
    max_shrink_runs: int
    reruns: int
    faults: str | None = None
    """`--faults`: the patterns of a focused search (None: the whole space)."""

    def args(self) -> list[str]:
        return [
            "--examples",
            str(self.examples),
            "--seed",
            str(self.seed),
            "--max-shrink-runs",
            str(self.max_shrink_runs),
            "--reruns",
            str(self.reruns),
            *(["--faults", self.faults] if self.faults else []),
        ]


FULL = {
    # the whole space: two Redis outages are drawn often enough (seed 1: the seventh
    # example, shrunk to exactly two `redis-down`)
    "loses-audit-on-second-outage": Setting(examples=30, seed=1, max_shrink_runs=24, reruns=1),
    # focused on PostgreSQL latency: the defect needs a commit that lands and answers late
    # (latency ~250-450 ms per round trip under the 1 s transaction timeout); seed 1's 30
    # draws of the whole space (or of `postgres-*`) hold no such fault (docs/DECISIONS.md).
    # Its first failure has five faults (~50 s a run): Hypothesis gets 8 runs, then the
    # search tries each fault alone and keeps the one failing most often, then by most
    # duplicates (2026-11-29: 22 runs, 16.7 min, one 100 ms+-200 latency kept)
    "resends-slow-commits": Setting(
        examples=30, seed=1, max_shrink_runs=8, reruns=1, faults="postgres-latency"
    ),
}
REASON = {
    "loses-audit-on-second-outage": r"audit: \d+ acknowledged, \d+ lost",
    "resends-slow-commits": r"audit: \d+ acknowledged, .*\d+ duplicated",
}
"""The checker and finding each variant must be flagged for."""
QUICK = {
    # a search focused on Redis outages (`--faults`): the first example is one outage, seed
    # 11's second is two (4.6+6.9 s and 13.5+7.5 s, one instance): the second is where the
    # variant starts losing acknowledged events; little shrinking
    "loses-audit-on-second-outage": Setting(
        examples=2, seed=11, max_shrink_runs=1, reruns=0, faults="redis-down"
    ),
    # a search focused on PostgreSQL latency (`--faults`): its draws no longer depend on
    # the rest of the space. The first example is always the mildest (100 ms, under the
    # variant's 0.25 s); seed 13's second is one 300 ms fault: a transaction still fits
    # the 1 s database timeout but every commit answers late (109-180 events duplicated;
    # at 400-1000 ms the transactions time out before the commit and the breaker sends
    # audit to the queue: 0-5, so a seed drawing those was flaky)
    "resends-slow-commits": Setting(
        examples=2, seed=13, max_shrink_runs=1, reruns=0, faults="postgres-latency"
    ),
}


def stormproof(args: list[str], report: Path) -> subprocess.CompletedProcess[str]:
    """Run the `stormproof` command line (this interpreter) in the repository."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "STORMPROOF_STACK": "local",
        "PATH": f"{ROOT / '.tools' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return subprocess.run(
        [sys.executable, "-m", "scenarios.cli", *args, "--report", str(report)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def target_cmd(name: str) -> str:
    return shlex.join([sys.executable, "-m", "tests.mutants.serve", name])


def replay_of(output: str) -> list[str] | None:
    """The replay command's words (without the leading `stormproof`); None if none printed."""
    lines = [line for line in output.splitlines() if "replay: stormproof run" in line]
    if not lines:
        return None
    words = shlex.split(lines[-1].split("replay: ", 1)[1])
    assert words[:2] == ["stormproof", "run"]
    return words[1:]


def minimal_faults(words: list[str]) -> list[tuple[str, dict[str, object]]]:
    schedule = parse_schedule(words[words.index("--schedule") + 1])
    return [(f.fault.name, dict(f.fault.params)) for f in schedule]


def _needs(name: str, faults: list[tuple[str, dict[str, object]]]) -> None:
    """The shrunk schedule holds the faults the defect needs, and no more."""
    names = [n for n, _ in faults]
    if name == "loses-audit-on-second-outage":
        redis = [n for n in names if n.startswith("redis-")]
        # two outages of Redis, or one fault that is itself repeated outages (flapping)
        assert len(redis) == len(names) and (len(names) == 2 or names == ["redis-flapping"]), faults
    else:
        assert len(names) == 1 and names[0].startswith("postgres-"), faults


@dataclass(frozen=True)
class SearchRuns:
    """A search and, if it printed a replay command, that replay alone and the same
    replay against the reference."""

    search: subprocess.CompletedProcess[str]
    replay: subprocess.CompletedProcess[str] | None = None
    reference: subprocess.CompletedProcess[str] | None = None

    @property
    def output(self) -> str:
        return self.search.stdout + self.search.stderr


def search_and_replay(name: str, setting: Setting, report: Path) -> SearchRuns:
    """Search for variant `name`, then run the replay it printed, on the variant and on
    the reference (the test asserts; this only runs, in the run pool)."""
    search = stormproof(
        ["property", *setting.args(), "--target-cmd", target_cmd(name)], report / "search"
    )
    words = replay_of(search.stdout + search.stderr)
    if words is None:
        return SearchRuns(search)
    replay = stormproof(words, report / "replay")
    i = words.index("--target-cmd")
    return SearchRuns(search, replay, stormproof(words[:i] + words[i + 2 :], report / "reference"))


def planned_search(name: str, mode: str) -> PlannedRun[SearchRuns]:
    """The pool's run of one search; the searches are the longest runs, started first."""
    setting, expected_s = (QUICK[name], 150.0) if mode == "quick" else (FULL[name], 1500.0)
    return PlannedRun(
        f"property-{mode}-{name}",
        lambda report: search_and_replay(name, setting, report),
        expected_s=expected_s,
    )


def planned_run(item: pytest.Item) -> PlannedRun[SearchRuns] | None:
    """The search a test of this module needs (started early by the run pool)."""
    name = getattr(item, "originalname", item.name)
    mode = {
        "test_property_quick_finds_the_variant_and_its_replay_fails": "quick",
        "test_property_finds_the_variant_with_the_faults_it_needs": "full",
    }.get(name)
    if mode is None:
        return None
    return planned_search(item.callspec.params["name"], mode)  # type: ignore[attr-defined]


def _check_found_and_replayed(name: str, runs: SearchRuns, *, minimal: bool) -> None:
    output = runs.output
    assert runs.search.returncode == 1, output
    assert "property failed: shrunk from" in output, output
    assert "Traceback" not in output
    assert re.search(REASON[name], output), output
    words = replay_of(output)
    assert words is not None, f"no replay command in:\n{output}"
    shrunk = re.search(r"shrunk from (\d+) fault\(s\) to (\d+)", output)
    assert shrunk is not None and int(shrunk[2]) <= int(shrunk[1])
    if minimal:
        _needs(name, minimal_faults(words))
    replay, reference = runs.replay, runs.reference
    assert replay is not None and reference is not None
    assert replay.returncode == 1, replay.stdout + replay.stderr
    assert re.search(REASON[name], replay.stdout), replay.stdout
    # the same schedule and workload against the reference: its audit checker passes, so
    # the variant is the cause (other checkers may have findings of their own: two Redis
    # outages show the reference's L1 misses written keys in the second, docs/DECISIONS.md)
    assert "Traceback" not in reference.stdout + reference.stderr
    assert "passed" in reference.stdout, reference.stdout + reference.stderr
    assert not re.search(r"^\s+audit: ", reference.stdout, re.MULTILINE), reference.stdout


# make test runs both quick searches, each focused on the faults its variant needs
# (`--faults`), in the run pool beside the mutants (they assert failures, which load cannot
# hide; the reference replay is judged by its audit checker only): resends-slow-commits
# 2.3-2.5 min, loses-audit-on-second-outage 2.7 min (two examples, a shrink, a
# confirmation, the replay, the reference).


@pytest.mark.parametrize("name", sorted(PROPERTY_MUTANTS))
def test_property_quick_finds_the_variant_and_its_replay_fails(
    name: str, run_pool: RunPool
) -> None:
    """Quick (CI): a seeded short search finds the variant for the intended reason, prints
    a shrunk schedule and a replay command; the replay alone exits 1 for the same reason,
    and the same replay against the reference passes the audit checker."""
    _check_found_and_replayed(name, run_pool.result(planned_search(name, "quick")), minimal=False)


@pytest.mark.nightly
@pytest.mark.timeout(TIMEOUT_S)
@pytest.mark.parametrize("name", sorted(PROPERTY_MUTANTS))
def test_property_finds_the_variant_with_the_faults_it_needs(name: str, run_pool: RunPool) -> None:
    """Full: `property --examples 30 --seed 1` finds the variant and shrinks it to the
    faults it needs (two Redis outages; one PostgreSQL fault losing a reply); the replay
    command alone exits 1."""
    _check_found_and_replayed(name, run_pool.result(planned_search(name, "full")), minimal=True)
