"""The HTML report as a browser shows it: headless Chromium's DOM and a screenshot."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from scenarios.checkers import (
    AuditChecker,
    BreakerTimelineChecker,
    HealthChecker,
    LatencyChecker,
    PhaseThresholds,
    Truth,
    run_checkers,
)
from scenarios.history import History
from scenarios.history_recorder import HistoryRecorder
from scenarios.pytest_plugin import unavailable
from scenarios.report import RunSummary, ScenarioResult, write_html_report

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
TIMEOUT_S = 90
SCENARIOS = ("redis-blackhole", "redis-blackhole-no-timeout")


def chromium() -> str:
    """The Chromium binary, or skip (fail when services are required)."""
    wanted = os.environ.get("STORMPROOF_CHROMIUM")
    candidates = [wanted] if wanted else [shutil.which("chromium"), "/usr/bin/chromium"]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    unavailable(f"no chromium executable at {wanted or 'chromium or /usr/bin/chromium'}")
    raise AssertionError("unreachable: unavailable() skips or fails")


class Clock:
    """A hand-moved monotonic clock."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def record(path: Path, slow: bool) -> History:
    """40 s: reads, audits, health polls; a Redis black hole from 10 s to 25 s."""
    clock = Clock()
    with HistoryRecorder(path, clock) as rec:
        for tick in range(400):
            clock.t = tick * 0.1
            if tick == 100:
                rec.fault("start", "redis-blackhole", "redis", "timeout")
            if tick == 250:
                rec.fault("end", "redis-blackhole", "redis", "timeout")
            faulty = 100 <= tick < 250
            inv = rec.invoke(tick % 8, "cache_get", f"k{tick % 5}", None)
            clock.t += (
                (2.0 if slow else 0.05 + 0.002 * (tick % 7))
                if faulty
                else 0.002 + 0.0005 * (tick % 11)
            )
            if faulty and tick % 9 == 0:
                rec.complete(
                    inv, "info" if slow else "fail", None, None if slow else 503, "timeout"
                )
            else:
                rec.complete(inv, "ok", {"value": {"v": 1}, "source": "l2"}, 200)
            if tick % 10 == 3:
                inv = rec.invoke(20, "audit", None, {"event_id": f"e{tick}"})
                clock.t += 0.01
                rec.complete(
                    inv, "ok", {"event_id": f"e{tick}", "path": "db" if faulty else "queue"}, 202
                )
            if tick % 5 == 0:
                state = (
                    ("OPEN" if 105 <= tick < 240 else "HALF_OPEN" if tick < 255 else "CLOSED")
                    if not slow and tick >= 105
                    else "CLOSED"
                )
                inv = rec.invoke(30, "health", None, None)
                clock.t += 0.003
                rec.complete(
                    inv,
                    "ok",
                    {"status": "HEALTHY" if state == "CLOSED" else "DEGRADED", "circuit": state},
                    200,
                )
    return History.load(path)


def build_report(tmp_path: Path) -> Path:
    results: list[ScenarioResult] = []
    histories: dict[str, History] = {}
    for name in SCENARIOS:
        slow = name.endswith("no-timeout")
        history = record(tmp_path / f"{name}.jsonl", slow)
        eids = [op.request["event_id"] for op in history.ops_for("audit")]
        truth = Truth(audit_rows={e: 1 for e in eids[3 if slow else 0 :]}, audit_pending=0)
        checks = run_checkers(
            [
                AuditChecker(compare_rows=False, min_evidence=10),
                BreakerTimelineChecker(open_within_s=2, close_within_s=5),
                HealthChecker(grace_s=2),
                LatencyChecker(
                    {"baseline": PhaseThresholds(p99_s=0.05), "fault": PhaseThresholds(p99_s=0.5)}
                ),
            ],
            history,
            truth,
        )
        results.append(
            ScenarioResult(
                name=name,
                description="Redis black hole for 15 s under read/audit load",
                passed=all(c.passed for c in checks),
                checks=checks,
                wall_s=41.0,
                fault_windows=history.fault_windows(),
                started_at="2024-05-01T12:00:00+00:00",
                log_excerpt=(
                    "INFO ready\n<script>document.title='pwned'</script>\nWARN breaker OPEN"
                ),
            )
        )
        histories[name] = history
    return write_html_report(tmp_path / "report.html", RunSummary.of(results, 82.0), histories)


class DomScan(HTMLParser):
    """Collects what the test looks for in the dumped DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.verdict_rows: list[str] = []
        self.svg_classes: list[str] = []
        self.scripts = 0
        self._in_verdicts = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and a.get("id") == "verdicts":
            self._in_verdicts = True
        if tag == "tr" and self._in_verdicts and a.get("data-scenario"):
            self.verdict_rows.append(a["data-scenario"] or "")
        if tag == "svg":
            self.svg_classes.append(a.get("class") or "")
        if tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_verdicts = False


def run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    """The DOM has the verdict table and every plot; the screenshot is a real page."""
    binary = chromium()
    report = build_report(tmp_path)
    url = report.resolve().as_uri()

    dom = run_chromium(binary, tmp_path / "profile-dom", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    scan = DomScan()
    scan.feed(dom.stdout)
    assert scan.verdict_rows == list(SCENARIOS)
    for kind in ("latency", "breaker-band", "throughput"):
        assert scan.svg_classes.count(f"plot {kind}") == len(SCENARIOS), scan.svg_classes
    assert scan.scripts == 0
    assert "<title>stormproof report: FAIL</title>" in dom.stdout

    png = tmp_path / "report.png"
    shot = run_chromium(
        binary,
        tmp_path / "profile-shot",
        f"--screenshot={png}",
        "--window-size=1280,2000",
        "--hide-scrollbars",
        url,
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 2000)
    assert len(data) > 40_000, "a blank page compresses to a few KB"
    if keep := os.environ.get("STORMPROOF_KEEP_SCREENSHOT"):
        shutil.copy(png, keep)
