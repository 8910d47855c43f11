"""Results JSON, JUnit XML and the self-contained HTML report."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
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
from scenarios.checkers.base import CheckResult
from scenarios.history import History
from scenarios.history_recorder import HistoryRecorder
from scenarios.report import (
    RunSummary,
    ScenarioResult,
    read_results_json,
    render_html_report,
    series_from_history,
    write_html_report,
    write_junit_xml,
    write_results_json,
)
from scenarios.report.series import downsample

HOSTILE_LOG = (
    "INFO start\n<script>alert('x')</script>\n\x1b[31mERROR\x1b[0m redis timeout & "
    '"quoted" </pre><img src=x onerror=alert(1)>\n'
)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def record_run(path: Path, breaker_opens: bool) -> History:
    """A 30 s run: cache reads, audit writes, health polls; Redis down from 10 s to 20 s."""
    clock = FakeClock()
    with HistoryRecorder(path, clock) as rec:
        for tick in range(300):
            clock.t = tick * 0.1
            if tick == 100:
                rec.fault("start", "redis-down", "redis", "down")
            if tick == 200:
                rec.fault("end", "redis-down", "redis", "down")
            faulty = 100 <= tick < 200
            inv = rec.invoke(tick % 4, "cache_get", "k", None)
            clock.t += 0.3 if faulty and tick % 10 == 0 else 0.004
            if faulty and tick % 25 == 0:
                rec.complete(inv, "info", None, None, "timeout")
            else:
                rec.complete(inv, "ok", {"key": "k", "value": {"v": 1}, "source": "l1"}, 200)
            if tick % 10 == 5:
                inv = rec.invoke(9, "audit", None, {"event_id": f"e{tick}"})
                clock.t += 0.01
                rec.complete(
                    inv, "ok", {"event_id": f"e{tick}", "path": "db" if faulty else "queue"}, 202
                )
            if tick % 5 == 0:
                open_now = breaker_opens and 105 <= tick < 205
                inv = rec.invoke(10, "health", None, None)
                clock.t += 0.002
                rec.complete(
                    inv,
                    "ok",
                    {
                        "status": "DEGRADED" if open_now else "HEALTHY",
                        "circuit": "OPEN" if open_now else "CLOSED",
                    },
                    200,
                )
    return History.load(path)


def scenario(
    tmp_path: Path, name: str, breaker_opens: bool, lose: int = 0
) -> tuple[ScenarioResult, History]:
    history = record_run(tmp_path / f"{name}.jsonl", breaker_opens)
    acked = [op.request["event_id"] for op in history.ops_for("audit")]
    truth = Truth(audit_rows={eid: 1 for eid in acked[lose:]}, audit_pending=0)
    checks = run_checkers(
        [
            AuditChecker(compare_rows=False, min_evidence=10),
            BreakerTimelineChecker(open_within_s=2, close_within_s=5),
            HealthChecker(grace_s=1),
            LatencyChecker({"baseline": PhaseThresholds(p99_s=0.05)}),
        ],
        history,
        truth,
    )
    result = ScenarioResult(
        name=name,
        description=f"Redis down for 10 s ({name})",
        passed=all(c.passed for c in checks),
        checks=checks,
        wall_s=31.5,
        fault_windows=history.fault_windows(),
        started_at="2024-05-01T12:00:00+00:00",
        run_dir=str(tmp_path / name),
        history_path=str(tmp_path / f"{name}.jsonl"),
        log_excerpt=HOSTILE_LOG,
        series=series_from_history(history),
    )
    return result, history


def summary_of(tmp_path: Path) -> tuple[RunSummary, dict[str, History]]:
    good, good_h = scenario(tmp_path, "redis-down", breaker_opens=True)
    bad, bad_h = scenario(tmp_path, "redis-down-broken", breaker_opens=False, lose=2)
    bare = ScenarioResult(
        "target-<kill>",
        "no history & no series",
        False,
        (),
        1.0,
        error="target did not start: port in use",
    )
    summary = RunSummary.of([good, bad, bare], wall_s=64.0, started_at="2024-05-01T12:00:00+00:00")
    return summary, {"redis-down": good_h, "redis-down-broken": bad_h}


def test_synthetic_scenarios_have_the_expected_verdicts(tmp_path: Path) -> None:
    """Sanity of the fixture: the healthy run passes, the broken one fails 3 checks."""
    summary, _ = summary_of(tmp_path)
    good, bad, bare = summary.scenarios
    assert good.passed, [c.summary for c in good.checks if not c.passed]
    assert {c.checker for c in bad.failed_checks} == {"audit", "breaker", "health"}
    assert not summary.passed and not bare.passed


def test_results_json_round_trips(tmp_path: Path) -> None:
    """results.json reads back into an equal summary, and is plain JSON."""
    summary, _ = summary_of(tmp_path)
    path = write_results_json(tmp_path / "run", summary)
    assert path == tmp_path / "run" / "results.json"
    raw = json.loads(path.read_text())
    assert raw["passed"] is False and [s["name"] for s in raw["scenarios"]] == [
        "redis-down",
        "redis-down-broken",
        "target-<kill>",
    ]
    back = read_results_json(path)
    assert back == summary
    assert back.scenarios[1].checks[0].details["counts"]["lost"] == 2


def test_junit_xml_has_a_testcase_per_scenario_and_a_failure_per_failed_check(
    tmp_path: Path,
) -> None:
    """Valid XML, even with control characters in the log; failures carry messages."""
    summary, _ = summary_of(tmp_path)
    path = write_junit_xml(tmp_path / "junit.xml", summary)
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("3", "1", "1")
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert set(cases) == {"redis-down", "redis-down-broken", "target-<kill>"}
    assert cases["redis-down"].find("failure") is None
    failures = cases["redis-down-broken"].findall("failure")
    messages = sorted(f.get("message", "") for f in failures)
    assert len(failures) == 3
    assert messages[0].startswith("audit: ") and "2 lost" in messages[0]
    assert messages[1].startswith("breaker: ") and messages[2].startswith("health: ")
    error = cases["target-<kill>"].find("error")
    assert error is not None and error.get("message") == "target did not start: port in use"
    out = cases["redis-down"].findtext("system-out") or ""
    assert "<script>alert('x')</script>" in out and "\x1b" not in out


def test_html_report_lists_every_scenario_with_plots(tmp_path: Path) -> None:
    """Verdict table first, then per-scenario plots, tables and the log."""
    summary, histories = summary_of(tmp_path)
    path = write_html_report(tmp_path / "report.html", summary, histories)
    html = path.read_text()
    verdicts = html[html.index('id="verdicts"') : html.index("</table>")]
    for name in ("redis-down", "redis-down-broken", "target-&lt;kill&gt;"):
        assert f">{name}</a>" in verdicts
    assert html.index('id="verdicts"') < html.index('class="plot latency"')
    assert html.count('<svg class="plot latency"') == 2
    assert html.count('<svg class="plot breaker-band"') == 2
    assert html.count('<svg class="plot throughput"') == 2
    assert html.count('<rect class="fault"') >= 4
    assert 'class="seg state-open"' in html and 'class="seg state-degraded"' in html
    assert html.count('class="audit-loss"') == 2
    assert html.count('class="percentiles"') == 2
    assert "No history for this scenario" in html
    assert "open_within_s=2, close_within_s=5" in html
    broken = html[html.index('data-scenario="redis-down-broken"') :]
    assert re.search(r'<td class="num bad">2</td>', broken)


def test_html_report_escapes_hostile_text_and_stays_self_contained(tmp_path: Path) -> None:
    """Log text, names and descriptions are escaped; no script, no external URL."""
    summary, histories = summary_of(tmp_path)
    html = render_html_report(summary, histories)
    assert "<script" not in html.lower()
    assert "<img" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "&lt;/pre&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "no history &amp; no series" in html
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html and "@import" not in html


def test_html_report_renders_from_stored_series_alone(tmp_path: Path) -> None:
    """Re-rendering from results.json (no histories) draws the same plots."""
    summary, histories = summary_of(tmp_path)
    direct = render_html_report(summary, histories)
    stored = render_html_report(read_results_json(write_results_json(tmp_path, summary)))
    assert stored.count('class="plot latency"') == 2
    assert stored == direct


def test_downsample_keeps_failures_and_extremes() -> None:
    """Big runs are thinned, but every failure and each bucket's slowest op stay."""
    points = [(i * 0.001, 0.001 + (i % 97) * 1e-5, "ok") for i in range(50_000)]
    points.append((25.0, 9.0, "ok"))
    points += [(i * 0.1, 2.0, "info") for i in range(100)]
    thin = downsample(points, 50.0, max_points=4000)
    assert len(thin) < 6000
    assert sum(1 for p in thin if p[2] == "info") == 100
    assert (25.0, 9.0, "ok") in thin


def test_scenario_result_cannot_pass_with_a_failed_check_or_an_error() -> None:
    """A contradictory result is refused when it is built, not discovered in the report."""
    failed = CheckResult("audit", False, "1 lost")
    with pytest.raises(ValueError, match="cannot pass"):
        ScenarioResult("x", "", True, (failed,), 1.0)
    with pytest.raises(ValueError, match="cannot pass"):
        ScenarioResult("x", "", True, (), 1.0, error="boom")
    assert not RunSummary.of([], 0.0).passed
