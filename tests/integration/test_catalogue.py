"""`make run`'s job: the whole quick catalogue against the reference, and its report."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scenarios.pytest_plugin import unavailable
from scenarios.run.catalogue import load_catalogue

# the catalogue's own subprocess timeout (900 s) bounds it, not pytest-timeout's 300 s default:
# 16 quick scenarios of up to ~25 s each, plus stack starts, pass 300 s on a loaded machine
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def catalogue_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    report = tmp_path_factory.mktemp("catalogue")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "scenarios.cli",
            "run",
            "--all",
            "--quick",
            "--jobs",
            "2",  # as `make run` does: two lanes, each on stacks of its own
            "--report",
            str(report),
            "--provider",
            "local",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    [run_dir] = list(report.glob("run-*"))
    return result, run_dir


def test_every_scenario_passes(
    catalogue_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """The reference passes every scenario of the quick catalogue; exit code 0."""
    result, run_dir = catalogue_run
    names = [s.name for s in load_catalogue()]
    summary = json.loads((run_dir / "results.json").read_text())
    verdicts = {s["name"]: s["passed"] for s in summary["scenarios"]}
    failing = {
        s["name"]: s.get("error") or [c["summary"] for c in s["checks"] if not c["passed"]]
        for s in summary["scenarios"]
        if not s["passed"]
    }
    assert set(verdicts) == set(names)
    assert failing == {}
    assert result.returncode == 0, result.stdout[-2000:]


def test_wall_time_and_report_path_are_printed(
    catalogue_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """The run ends with the wall time and where the report is; each scenario < 30 s."""
    result, run_dir = catalogue_run
    assert re.search(r"\d+ passed, 0 failed in [\d.]+s wall time", result.stdout)
    assert f"report: {run_dir / 'report.html'}" in result.stdout
    summary = json.loads((run_dir / "results.json").read_text())
    slow = {s["name"]: s["wall_s"] for s in summary["scenarios"] if s["wall_s"] >= 30}
    assert slow == {}
    assert (run_dir / "junit.xml").read_text().count("<testcase") == len(summary["scenarios"])


def test_report_renders_in_chromium(
    catalogue_run: tuple[subprocess.CompletedProcess[str], Path], tmp_path: Path
) -> None:
    """The HTML report renders headless: verdict table lists every scenario, plots present."""
    chromium = shutil.which("chromium")
    if chromium is None:
        unavailable("chromium is not installed (scripts/bootstrap --test installs it)")
        return
    _, run_dir = catalogue_run
    url = (run_dir / "report.html").as_uri()
    dom = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    table = dom.split('id="verdicts"', 1)[1].split("</table>", 1)[0]
    for scenario in load_catalogue():
        assert f'data-scenario="{scenario.name}"' in table
    assert dom.count('class="plot latency"') >= len(load_catalogue())
    assert "breaker-band" in dom and "throughput" in dom
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile2'}",
            f"--screenshot={shot}",
            "--window-size=1280,2000",
            url,
        ],
        capture_output=True,
        timeout=120,
    )
    assert shot.stat().st_size > 20_000
