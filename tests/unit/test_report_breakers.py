"""The report's per-window breaker table: per dependency, fault window and instance,
opened at / closed at / verdict, from the breaker check's details."""

from __future__ import annotations

import pytest

from scenarios.checkers import BreakerTimelineChecker, CheckResult, Truth
from scenarios.checkers.final_read import FinalReadChecker, FinalReads, Observation
from scenarios.history import FaultWindow, History
from scenarios.report import RunSummary, ScenarioResult
from scenarios.report.breakers import breaker_rows
from scenarios.report.html import render_html_report
from tests.unit.test_checkers import Synth
from tests.unit.test_evidence import breaker_polls

FIRST = FaultWindow("redis-down", "redis", 5.0, 10.0, "down")
SECOND = FaultWindow("redis-down", "redis", 20.0, 25.0, "down")


def two_windows() -> CheckResult:
    """i1's breaker opens and closes in the first window only; i2's in both."""
    s = Synth()
    breaker_polls(
        s, [(0, 6, "CLOSED", "CLOSED"), (6, 11, "OPEN", "CLOSED"), (11, 30, "CLOSED", "CLOSED")]
    )
    breaker_polls(
        s,
        [
            (0, 6, "CLOSED", "CLOSED"),
            (6, 11, "OPEN", "CLOSED"),
            (11, 21, "CLOSED", "CLOSED"),
            (21, 26, "OPEN", "CLOSED"),
            (26, 30, "CLOSED", "CLOSED"),
        ],
        instance="i2",
    )
    checker = BreakerTimelineChecker(open_within_s=2, close_within_s=4)
    return checker.check(s.history(FIRST, SECOND), Truth())


def test_every_window_and_instance_has_a_row_with_its_verdict() -> None:
    """Four rows (2 windows x 2 instances); only i1's second window fails, with the
    check's reason; the times are run seconds (edge + time to open/close)."""
    rows = breaker_rows((two_windows(),))
    assert [(r.window, r.instance, r.ok) for r in rows] == [
        ("redis-down (5.0s-10.0s)", "i1", True),
        ("redis-down (5.0s-10.0s)", "i2", True),
        ("redis-down (20.0s-25.0s)", "i1", False),
        ("redis-down (20.0s-25.0s)", "i2", True),
    ]
    [bad] = [r for r in rows if not r.ok]
    assert bad.instance == "i1" and bad.window == "redis-down (20.0s-25.0s)"
    assert bad.opened_at is None and bad.verdict == "the breaker never opened"
    first_i1 = next(r for r in rows if r.instance == "i1" and r.ok)
    assert first_i1.opened_at == pytest.approx(6.01)
    assert first_i1.closed_at == pytest.approx(11.01)
    assert {r.dependency for r in rows} == {"redis"}


def test_the_html_report_shows_the_table_and_the_final_read_findings() -> None:
    """The rendered report carries the breaker table (a failing row marked) and the
    final-read categories among the findings."""
    final = FinalReadChecker(min_keys=1).check(
        _written(), Truth(final_reads=FinalReads([Observation("redis", "cache", "a", 0, 1)]))
    )
    result = ScenarioResult("s", "", False, (two_windows(), final), 1.0)
    html = render_html_report(RunSummary.of([result], 1.0, "now"))
    assert "Breakers per fault window and instance" in html
    assert "redis-down (20.0s-25.0s)" in html
    assert '<td class="bad">the breaker never opened</td>' in html
    assert "<td>final read: stale</td>" in html


def _written() -> History:
    s = Synth()
    s.op("cache_put", 1.0, 1.1, key="a", request={"value": {"v": 1}}, status=204)
    s.op("cache_put", 2.0, 2.1, key="a", request={"value": {"v": 2}}, status=204)
    return s.history()
