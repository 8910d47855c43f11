"""Which provider can run which scenario: said before a run starts anything."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from scenarios.run.capabilities import refusals, why_not
from scenarios.run.catalogue import load_catalogue

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = {s.name: s for s in load_catalogue()}


def test_process_faults_on_dependencies_need_a_provider_that_signals() -> None:
    """redis-sigkill runs on local and docker (docker kill), not on an external stack."""
    scenario = CATALOGUE["redis-sigkill"]
    assert why_not(scenario, "local") is None
    assert why_not(scenario, "docker") is None
    why = why_not(scenario, "external")
    assert why is not None and "cannot signal" in why and "redis-sigkill" in why


def test_target_faults_and_network_faults_run_everywhere() -> None:
    """Signals to the target (a local process) and proxy faults need nothing from the stack."""
    for name in ("target-sigkill", "redis-down", "all-down"):
        for provider in ("local", "docker", "external"):
            assert why_not(CATALOGUE[name], provider) is None, (name, provider)


def test_power_cuts_need_the_local_stack() -> None:
    """Power cuts and disk faults need the local stack's forgetful disks."""
    for name in ("redis-powercut", "target-powercut", "journal-disk-full"):
        assert why_not(CATALOGUE[name], "local") is None
        assert "forgetful disks" in (why_not(CATALOGUE[name], "docker") or ""), name


def test_stack_options_each_provider_honours() -> None:
    """An unsafe Redis runs on local and docker; an option nobody listed needs local."""
    unsafe = replace(CATALOGUE["redis-down"], stack={"redis_aof": False})
    assert why_not(unsafe, "docker") is None
    assert "redis_aof" in (why_not(unsafe, "external") or "")
    novel = replace(CATALOGUE["redis-down"], stack={"power_cut_mount": True})
    assert why_not(novel, "local") is None
    assert "power_cut_mount" in (why_not(novel, "docker") or "")
    default = replace(CATALOGUE["redis-down"], stack={"redis_aof": True})
    assert refusals([default, unsafe], "docker") == {}


def test_cli_refuses_named_scenarios_before_starting_anything(tmp_path: Path) -> None:
    """`run redis-sigkill --provider external`: exit 2, the reason, and no report written."""
    report = tmp_path / "r"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "scenarios.cli", "run", "redis-sigkill", "redis-down"),
            *("--provider", "external", "--allow-reset", "--report", str(report)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "STORMPROOF_STACK"},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "redis-sigkill cannot run, it needs the local stack" in lines[0]
    assert not report.exists()
