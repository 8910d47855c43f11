"""`STORMPROOF_STACK=docker stormproof run`: the quick catalogue against containers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scenarios.run.capabilities import why_not
from scenarios.run.catalogue import load_catalogue
from tests.integration.docker_support import docker_ids, require_docker

pytestmark = [pytest.mark.docker, pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]


def run_cli(
    args: list[str], env: dict[str, str], timeout_s: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scenarios.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=ROOT,
        env={**os.environ, **env},
    )


def results(report: Path) -> dict[str, bool]:
    """Scenario name -> passed, from the one run under `report`."""
    (path,) = report.glob("run-*/results.json")
    return {s["name"]: s["passed"] for s in json.loads(path.read_text())["scenarios"]}


def test_quick_redis_and_postgres_scenarios_pass_on_docker(tmp_path: Path) -> None:
    """Every quick Redis and PostgreSQL scenario (redis-sigkill included) passes on containers,
    and the run leaves no container behind."""
    require_docker()
    names = [
        s.name
        for s in load_catalogue()
        if s.name.startswith(("redis-", "postgres-")) and why_not(s, "docker") is None
    ]
    assert "redis-sigkill" in names  # power cuts need the local stack's disks: left out
    before = set(docker_ids("ps"))
    result = run_cli(
        ["run", *names, "--quick", "--jobs", "2", "--report", str(tmp_path)],
        {"STORMPROOF_STACK": "docker"},
        timeout_s=60 + 45 * len(names),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert results(tmp_path) == dict.fromkeys(names, True)
    assert set(docker_ids("ps")) <= before, "the run left containers"
