"""`stormproof load`: Locust under a Redis black hole tells the reference from the naive variant.

The load command runs in this process (it never imports Locust); Locust runs in its own
subprocesses. Short phases (6 s each after a 2-s warm-up, 10 users at 10 req/s): about
450 reads per phase, enough for a p99 and a throughput ratio.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from scenarios.cli import main as cli_main
from scenarios.load.env import LoadEnv
from scenarios.load.options import DEFAULT_LOCUSTFILE, REPO_ROOT
from scenarios.pytest_plugin import unavailable
from scenarios.stack import Stack

pytestmark = [
    pytest.mark.load,
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("locust") is None, reason="locust is not installed (extra: load)"
    ),
]
PHASE_ROWS = {(p, k) for p in ("baseline", "fault", "recovery") for k in ("reads", "writes")}
QUICK = ["--duration", "18", "--users", "10", "--warmup", "2"]


def run_load(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str
) -> tuple[int, str, dict[str, Any]]:
    """`stormproof load ...` in this process; (exit code, stdout, load.json)."""
    code = cli_main(["load", *QUICK, "--report", str(tmp_path), *args])
    out, err = capsys.readouterr()
    if code == 2 and "stormproof:" in err:
        unavailable(f"the stack cannot start: {err.strip()}")
    results = sorted(tmp_path.glob("load-*/load.json"))
    assert results, f"no load.json written\n{out}\n{err}"
    assert "gevent" not in sys.modules and "locust" not in sys.modules
    return code, out, json.loads(results[-1].read_text())


def table_rows(out: str) -> set[tuple[str, str]]:
    """(phase, kind) of every row of the per-phase table that has numbers."""
    rows = set()
    for line in out.splitlines():
        words = line.replace("|", " ").split()
        if len(words) == 8 and (words[0], words[1]) in PHASE_ROWS and words[2].isdigit():
            rows.add((words[0], words[1]))
    return rows


def verdicts(data: dict[str, Any], variant: str) -> dict[str, bool]:
    [result] = [r for r in data["results"] if r["variant"] == variant]
    return {v["name"]: v["passed"] for v in result["verdicts"]}


def test_reference_passes_under_a_redis_black_hole(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, data = run_load(capsys, tmp_path, "--fault", "redis-blackhole")
    assert code == 0, out
    assert "reference: PASS" in out
    assert table_rows(out) == PHASE_ROWS
    judged = verdicts(data, "reference")
    assert judged == {
        "reads.fault.failures": True,
        "reads.fault.p99": True,
        "reads.fault.rps": True,
        "fault.injected": True,
        "audit.lost": True,
        "audit.backlog": True,
    }
    result = data["results"][0]
    assert result["acknowledged_events"] > 100  # the loss check checked something
    run_dir = Path(result["run_dir"])
    assert (run_dir / "locust.html").stat().st_size > 10_000
    assert (run_dir / "locust_stats.csv").exists()


def test_naive_variant_fails_the_read_thresholds(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, data = run_load(capsys, tmp_path, "--fault", "redis-blackhole", "--variant", "naive")
    assert code == 1, out
    assert "naive: FAIL" in out
    assert "FAIL reads.fault.failures" in out
    assert "FAIL reads.fault.rps" in out
    judged = verdicts(data, "naive")
    assert judged["fault.injected"] and judged["audit.lost"]  # slow, but loses nothing


def test_distributed_master_and_two_workers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, data = run_load(capsys, tmp_path, "--workers", "2")
    assert code == 0, out
    assert table_rows(out) == PHASE_ROWS
    result = data["results"][0]
    run_dir = Path(result["run_dir"])
    assert (run_dir / "locust-master.log").exists()
    worker_acks = list(run_dir.glob("acks.txt.*"))
    assert len(worker_acks) == 2, worker_acks  # each worker wrote its own acknowledged ids
    assert verdicts(data, "reference")["audit.lost"]
    stats = {(s["phase"], s["kind"]): s for s in result["stats"]}
    assert stats[("fault", "reads")]["requests"] > 100


def test_the_fault_is_reverted_when_locust_is_terminated(stormproof_stack: Stack) -> None:
    """SIGTERM mid-fault (Locust installs its own handler only after a shape finishes)."""
    contract = LoadEnv(
        phases=(0.5, 60.0, 1.0),
        warmup_s=0.0,
        users=1,
        user_rps=1.0,
        fault="redis-down",
        toxiproxy_url=stormproof_stack.urls.toxiproxy_url,
    )
    env = {**os.environ, **contract.to_env()}
    proxy = stormproof_stack.redis_proxy
    locust = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(DEFAULT_LOCUSTFILE),
            "--headless",
            "--host",
            "http://127.0.0.1:9",
            "--only-summary",
        ],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while proxy.refresh().enabled and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not proxy.refresh().enabled, "the fault was never injected"
        locust.send_signal(signal.SIGTERM)
        locust.wait(timeout=20)
        assert proxy.refresh().enabled
    finally:
        if locust.poll() is None:
            os.killpg(locust.pid, signal.SIGKILL)
            locust.wait(timeout=10)


def test_the_test_suite_does_not_load_locust(request: pytest.FixtureRequest) -> None:
    """No Locust pytest plugin (its `session`/`fastsession` fixtures), no gevent patching."""
    assert request.config.pluginmanager.get_plugin("locust") is None
    assert "pytest_locust.plugin" not in sys.modules
    assert "gevent" not in sys.modules
    listed = subprocess.run(
        [sys.executable, "-m", "pytest", "--fixtures", "-q", "tests/unit/test_load_stats.py"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "pytest_locust" not in listed.stdout
    assert "fastsession" not in listed.stdout
