"""`stormproof run`: bad input is refused before anything starts; Ctrl-C cleans up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from scenarios.stack import Stack
from tests.integration.test_stack_cli import alive

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "scenarios.cli"]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    ("faults", "problem"),
    [
        ('[{at_s = 1, fault = "redis-meteor", duration_s = 2}]', "unknown fault 'meteor'"),
        ('[{at_s = 1, fault = "redis-down", duration_s = -2}]', "duration_s must be positive"),
        ('[{at_s = 1, fault = "mainframe-down", duration_s = 2}]', "cannot target 'mainframe'"),
        ('[{at_s = 9, fault = "redis-down", duration_s = 5}]', "ends after the run"),
    ],
)
def test_invalid_scenario_file_is_refused_in_one_line(
    tmp_path: Path, faults: str, problem: str
) -> None:
    """An invalid scenario file: exit 2, one line naming the problem, no report written."""
    path = tmp_path / "bad.toml"
    path.write_text(f'[[scenario]]\nname = "bad"\nduration_s = 10\nfaults = {faults}\n')
    result = _run("run", "--all", "--scenario-file", str(path), "--report", str(tmp_path / "r"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and problem in lines[0] and "bad" in lines[0]
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        ("not json", "not valid JSON"),
        ('[{"at_s": 1, "fault": "redis-down"}]', "missing duration_s"),
        ('[{"at_s": -1, "fault": "redis-down", "duration_s": 1}]', "at_s must not be negative"),
    ],
)
def test_invalid_schedule_is_refused_in_one_line(
    tmp_path: Path, schedule: str, problem: str
) -> None:
    """An invalid --schedule: exit 2, one line, nothing started."""
    result = _run("run", "--schedule", schedule, "--report", str(tmp_path / "r"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and problem in lines[0]
    assert not (tmp_path / "r").exists()


def test_unknown_scenario_and_bad_usage(tmp_path: Path) -> None:
    """Unknown scenario names list the known ones; no scenario at all is bad usage."""
    unknown = _run("run", "volcano", "--report", str(tmp_path))
    assert (
        unknown.returncode == 2 and "volcano" in unknown.stderr and "redis-down" in unknown.stderr
    )
    nothing = _run("run", "--report", str(tmp_path))
    assert nothing.returncode == 2 and "nothing to run" in nothing.stderr


def test_an_unknown_check_to_skip_is_refused_in_one_line(tmp_path: Path) -> None:
    """--skip-check names a check of the chosen scenarios, or nothing starts (a typo must
    not silently keep, or drop, a check)."""
    result = _run("run", "redis-down", "--skip-check", "alert", "--report", str(tmp_path / "r"))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "--skip-check alert: no such check" in line and "alerts" in line
    assert not (tmp_path / "r").exists()


def test_list_shows_the_catalogue() -> None:
    """`stormproof list` names every catalogue scenario."""
    result = _run("list")
    assert result.returncode == 0
    for name in ("redis-down", "all-down", "target-sigkill", "two-instances-invalidation"):
        assert name in result.stdout


def _marked_pids(mark: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if mark.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.integration
def test_ctrl_c_reverts_faults_and_stops_processes(stormproof_stack: Stack, tmp_path: Path) -> None:
    """SIGINT in the middle of a fault: the proxies are healed (external stack) and no
    process the run started is left."""
    mark = f"STORMPROOF_TEST_MARK={uuid.uuid4()}"
    env = {**os.environ, **stormproof_stack.urls.as_env(), mark.split("=")[0]: mark.split("=")[1]}
    child = subprocess.Popen(
        [
            *CLI,
            "run",
            "redis-down",
            "--quick",
            "--provider",
            "external",
            "--allow-reset",
            "--report",
            str(tmp_path),
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell without job control starts background jobs with SIGINT ignored, and a
        # child inherits that: give the run Python's Ctrl-C handling whoever started pytest
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while stormproof_stack.redis_proxy.refresh().enabled:
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the fault never started"
        time.sleep(0.1)
    assert _marked_pids(mark)  # the target is running
    child.send_signal(signal.SIGINT)
    child.communicate(timeout=60)
    assert child.returncode != 0
    proxy = stormproof_stack.redis_proxy.refresh()
    assert proxy.enabled and proxy.toxics() == []
    deadline = time.monotonic() + 10
    while _marked_pids(mark) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _marked_pids(mark) == []


def test_external_stack_is_not_wiped_without_allow_reset(tmp_path: Path) -> None:
    """A run on an external stack (someone's staging) refuses to drop tables and flush
    Redis unless --allow-reset says it may; nothing is started."""
    result = _run("run", "redis-down", "--provider", "external", "--report", str(tmp_path / "r"))
    assert result.returncode == 2
    assert "--allow-reset" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("latency = { falut = { p99_s = 0.001 } }", "unknown key(s) ['falut']"),
        ('health = { during = { redis = "DEGRADED" } }', "list of strings"),
    ],
)
def test_typos_in_expectations_are_refused(tmp_path: Path, body: str, problem: str) -> None:
    """A misspelt phase or a status that is not a list is an error, not a checker that
    silently checks nothing; `list` refuses the file the same way (exit 2, one line)."""
    path = tmp_path / "typo.toml"
    path.write_text(f'[[scenario]]\nname = "typo"\nduration_s = 10\n[scenario.expect]\n{body}\n')
    for args in (("run", "--all"), ("list",)):
        result = _run(*args, "--scenario-file", str(path))
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and problem in lines[0]


def test_scenario_file_gets_its_defaults(tmp_path: Path) -> None:
    """A scenario file's [defaults.target_env] applies to its scenarios, as in the catalogue."""
    from scenarios.run.scenario import load_scenarios

    path = tmp_path / "own.toml"
    path.write_text(
        '[defaults.target_env]\nCACHE_TTL = "60"\n'
        '[[scenario]]\nname = "a"\nduration_s = 5\ntarget_env = { CACHE_L1_TTL = "5" }\n'
    )
    [scenario] = load_scenarios(path)
    assert scenario.target_env == {"CACHE_TTL": "60", "CACHE_L1_TTL": "5"}


def _children(pid: int) -> dict[int, str]:
    """The processes whose parent is `pid`: pid -> command name."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :]
        if int(rest.split()[1]) == pid:
            found[int(entry.name)] = name
    return found


@pytest.mark.integration
def test_sigterm_of_a_local_run_stops_its_stack_and_target(tmp_path: Path) -> None:
    """SIGTERM (a cancelled CI job) in the middle of a run on its own local stack: the run
    exits, Redis, PostgreSQL, Toxiproxy and the target it started are all stopped, and the
    stack's data dirs are removed (a graceful close, not only the parent-death signal)."""
    child = subprocess.Popen(
        [*CLI, "run", "postgres-down", "--quick", "--provider", "local", "--report", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wanted = {"redis-server", "postgres", "toxiproxy-serve", "python"}
        deadline = time.monotonic() + 90
        started: dict[int, str] = {}
        while not wanted <= set(started.values()):
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, f"the stack and target never ran: {started}"
            started |= _children(child.pid)
            time.sleep(0.2)
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode != 0, err
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [started[pid] for pid in started if alive(pid)] == []
    left = [
        owner.parent
        for owner in Path(tempfile.gettempdir()).glob("stormproof-pg-*/owner.pid")
        if owner.read_text() == str(child.pid)
    ]
    assert left == [], "the PostgreSQL data dir was not removed"
