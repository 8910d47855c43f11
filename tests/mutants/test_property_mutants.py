"""`stormproof property` finds what no single catalogue fault shows, on real Redis,
PostgreSQL and Toxiproxy: a variant that loses audit events from a dependency's second
outage on, and one that writes an event twice when a PostgreSQL reply is lost after the
commit. Each prints a shrunk schedule and a replay command, and that command, run on its
own, exits 1. The same replay against the reference passes the checker that flagged the variant.

The full setting (`--examples 30 --seed 1`, default shrinking) is marked nightly; the quick
one, run in CI, uses a seed whose search meets a failing schedule within a few examples
and a small shrinking budget.
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


FULL = Setting(examples=30, seed=1, max_shrink_runs=24, reruns=1)
REASON = {
    "loses-audit-on-second-outage": r"audit: \d+ acknowledged, \d+ lost",
    "resends-slow-commits": r"audit: \d+ acknowledged, .*\d+ duplicated",
}
"""The checker and finding each variant must be flagged for."""
QUICK = {
    # a seed whose second/third drawn schedule is the kind the variant needs (seed 40: two
    # Redis SIGKILLs), with little shrinking
    "loses-audit-on-second-outage": Setting(examples=4, seed=40, max_shrink_runs=1, reruns=0),
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


def replay_of(output: str) -> list[str]:
    """The replay command's words (without the leading `stormproof`)."""
    lines = [line for line in output.splitlines() if "replay: stormproof run" in line]
    assert lines, f"no replay command in:\n{output}"
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


def _check_found_and_replayed(
    name: str, setting: Setting, tmp_path: Path, *, minimal: bool
) -> None:
    found = stormproof(
        ["property", *setting.args(), "--target-cmd", target_cmd(name)], tmp_path / "search"
    )
    output = found.stdout + found.stderr
    assert found.returncode == 1, output
    assert "property failed: shrunk from" in output, output
    assert "Traceback" not in output
    assert re.search(REASON[name], output), output
    words = replay_of(output)
    shrunk = re.search(r"shrunk from (\d+) fault\(s\) to (\d+)", output)
    assert shrunk is not None and int(shrunk[2]) <= int(shrunk[1])
    if minimal:
        _needs(name, minimal_faults(words))
    replay = stormproof(words, tmp_path / "replay")
    assert replay.returncode == 1, replay.stdout + replay.stderr
    assert re.search(REASON[name], replay.stdout), replay.stdout
    # the same schedule and workload against the reference: its audit checker passes, so
    # the variant is the cause (other checkers may have findings of their own: two Redis
    # outages show the reference's L1 misses written keys in the second, docs/DECISIONS.md)
    i = words.index("--target-cmd")
    reference = stormproof(words[:i] + words[i + 2 :], tmp_path / "reference")
    assert "Traceback" not in reference.stdout + reference.stderr
    assert "passed" in reference.stdout, reference.stdout + reference.stderr
    assert not re.search(r"^\s+audit: ", reference.stdout, re.MULTILINE), reference.stdout


# make test runs one of the two quick searches: resends-slow-commits (focused on
# PostgreSQL latency, 3 of 3 runs found it, 2.3-2.5 min: two examples, a shrink, a
# confirmation, the replay, the reference). loses-audit-on-second-outage's quick search
# needs a multi-fault draw, which comes later in a search (4 examples: 4.8 min), over
# make test's 30 minutes with the rest; it runs nightly with the full searches.
QUICK_NAMES = [
    pytest.param(name, marks=pytest.mark.nightly)
    if name == "loses-audit-on-second-outage"
    else name
    for name in sorted(PROPERTY_MUTANTS)
]


@pytest.mark.parametrize("name", QUICK_NAMES)
def test_property_quick_finds_the_variant_and_its_replay_fails(name: str, tmp_path: Path) -> None:
    """Quick (CI): a seeded short search finds the variant for the intended reason, prints
    a shrunk schedule and a replay command; the replay alone exits 1 for the same reason,
    and the same replay against the reference passes the audit checker."""
    _check_found_and_replayed(name, QUICK[name], tmp_path, minimal=False)


@pytest.mark.nightly
@pytest.mark.parametrize("name", sorted(PROPERTY_MUTANTS))
def test_property_finds_the_variant_with_the_faults_it_needs(name: str, tmp_path: Path) -> None:
    """Full: `property --examples 30 --seed 1` finds the variant and shrinks it to the
    faults it needs (two Redis outages; one PostgreSQL fault losing a reply); the replay
    command alone exits 1."""
    _check_found_and_replayed(name, FULL, tmp_path, minimal=True)
