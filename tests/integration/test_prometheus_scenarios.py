"""Scenarios with a real Prometheus: alerts as Prometheus itself saw them, and the Grafana
dashboard's queries against live data.

One local stack with Prometheus runs the catalogue's `redis-down` twice: against the
reference (REDIS_MULTIPLE_FAILURES fires during the outage and resolves after; every
Grafana panel's PromQL, sent to Prometheus's query API at a moment of the outage, parses
and returns at least one series) and against a broken variant whose Redis failure counter
never moves (`prometheus_alerts` fails, for that reason).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scenarios.pytest_plugin import unavailable
from scenarios.report import ScenarioResult
from scenarios.run.catalogue import load_catalogue, select
from scenarios.run.runner import RunOptions, run_scenario
from scenarios.stack import Stack, StackError, open_stack
from scenarios.stack.prometheus import PrometheusError
from scenarios.target import TargetSpec

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "stormproof.json"
MUTANT = "redis-failures-never-counted"


def run(stack: Stack, report_dir: Path, target: TargetSpec | None = None) -> ScenarioResult:
    [scenario] = select(load_catalogue(), ["redis-down"])
    options = RunOptions(report_dir=report_dir, target=target or TargetSpec(), provider="local")
    result, _ = asyncio.run(run_scenario(scenario, stack, options, report_dir / scenario.name))
    assert result.error is None, result.error
    return result


def verdict(result: ScenarioResult, checker: str = "prometheus_alerts") -> Any:
    [check] = [c for c in result.checks if c.checker == checker]
    return check


def panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]


def test_alerts_from_prometheus_pass_the_reference_and_flag_a_silent_failure_counter(
    tmp_path: Path,
) -> None:
    """The reference: the alert fired during the outage and resolved, and every Grafana
    panel query returns data at that moment. The variant that never counts Redis failures:
    prometheus_alerts fails because the alert never fired."""
    try:
        stack = open_stack("local", base_dir=tmp_path / "stack", prometheus=True)
    except StackError as exc:
        unavailable(f"the stack with Prometheus cannot start: {exc}")
        raise
    try:
        reference = run(stack, tmp_path / "reference")
        check = verdict(reference)
        assert check.passed, check.summary
        assert "REDIS_MULTIPLE_FAILURES at" in check.summary
        # (the latency thresholds are other tests' business: they flake on a loaded machine)
        assert verdict(reference, "audit").passed, verdict(reference, "audit").summary

        prometheus = stack.prometheus
        assert prometheus is not None
        [[fired_at, _]] = check.details["firing"]["REDIS_MULTIPLE_FAILURES"]
        moment = check.details["wall_t0"] + fired_at
        empty, broken = [], []
        for title, expr in panel_queries():
            try:
                if not prometheus.query(expr, at=moment):
                    empty.append(f"{title}: {expr}")
            except PrometheusError as exc:
                broken.append(f"{title}: {exc}")
        assert broken == [], "panel queries Prometheus rejects"
        assert empty == [], f"panel queries without data at {fired_at:.0f}s of the outage"

        command = (sys.executable, "-m", "tests.mutants.serve", MUTANT)
        mutant = run(
            stack,
            tmp_path / "mutant",
            TargetSpec(command=command, env={"PYTHONPATH": str(ROOT)}),
        )
    finally:
        stack.close()
    check = verdict(mutant)
    assert not check.passed
    assert check.summary.startswith("REDIS_MULTIPLE_FAILURES never fired during the fault"), (
        check.summary
    )
    # the variant is otherwise the reference: it still kept every acknowledged event
    assert verdict(mutant, "audit").passed, verdict(mutant, "audit").summary


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains `text`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def test_run_with_prometheus_scrapes_and_leaves_no_process(tmp_path: Path) -> None:
    """`stormproof run --with-prometheus` on a scenario without the option: Prometheus ran
    (its write-ahead log holds data) and is gone when the command returns."""
    report = tmp_path / "report"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "scenarios.cli",
            "run",
            "redis-latency",
            "--quick",
            "--with-prometheus",
            "--provider",
            "local",
            "--report",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    [prometheus_dir] = list(report.glob("run-*/stack/stormproof-prometheus-*"))
    wal = list((prometheus_dir / "data" / "wal").glob("0*"))
    assert wal and sum(p.stat().st_size for p in wal) > 10_000, "nothing was scraped"
    assert processes_mentioning(str(prometheus_dir)) == []
