"""Property run against the real reference: generated fault schedules keep the guarantees.

Quick in CI (STORMPROOF_PROPERTY_EXAMPLES, default 2); set it higher for a long run. The
issue-14 acceptance run (`--examples 20 --seed 1`) is STORMPROOF_PROPERTY_EXAMPLES=20
STORMPROOF_PROPERTY_SEED=1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def test_generated_schedules_keep_the_guarantees(tmp_path: Path) -> None:
    """`stormproof property` holds for the reference on generated schedules."""
    examples = os.environ.get("STORMPROOF_PROPERTY_EXAMPLES", "2")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "scenarios.cli",
            "property",
            "--examples",
            examples,
            "--seed",
            os.environ.get("STORMPROOF_PROPERTY_SEED", "3"),
            "--report",
            str(tmp_path),
            "--provider",
            "local",
        ],
        capture_output=True,
        text=True,
        timeout=300 + 60 * int(examples),
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert result.stdout.count("pass generate") == int(examples)
    assert f"property held: {examples} run(s)" in result.stdout


def test_replay_command_runs(tmp_path: Path) -> None:
    """The replay command a failure prints (`run --schedule`) runs that schedule and passes
    for the reference."""
    schedule = '[{"at_s":1.5,"duration_s":2,"fault":"redis-blackhole","params":{}}]'
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "scenarios.cli",
            "run",
            "--quick",
            "--schedule",
            schedule,
            "--report",
            str(tmp_path),
            "--provider",
            "local",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "PASS  schedule" in result.stdout
