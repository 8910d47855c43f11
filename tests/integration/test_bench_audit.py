"""`stormproof bench audit --json` in quick mode: one JSON object with positive figures
(the drain's time for a million events and peak heap included)."""

from __future__ import annotations

import json

import pytest

from scenarios.bench import audit
from scenarios.pytest_plugin import unavailable
from scenarios.stack import StackError

pytestmark = pytest.mark.integration

RATIOS = (
    "queue_vs_xadd",
    "db_vs_insert",
    "journal_vs_fsync",
    "drain_vs_copy",
    "queue_wait_vs_xadd",
)
RAW = (
    "queue_events_per_s",
    "xadd_per_s",
    "db_events_per_s",
    "insert_per_s",
    "journal_events_per_s",
    "fsync_records_per_s",
    "drain_rows_per_s",
    "copy_rows_per_s",
    "queue_wait_events_per_s",
    "replicated_xadd_per_s",
)


def test_quick_bench_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 0 and a single JSON object whose ratios and raw figures are all positive."""
    try:
        code = audit.main(json_output=True, quick=True)
    except StackError as exc:
        unavailable(f"the bench's stack cannot start: {exc}")
    out = capsys.readouterr().out.strip()
    assert code == 0
    assert len(out.splitlines()) == 1
    figures = json.loads(out)
    for key in (*RATIOS, *RAW):
        assert isinstance(figures[key], int | float) and figures[key] > 0, key
    for key in RATIOS:
        raw_ours, raw_base = RAW[2 * RATIOS.index(key)], RAW[2 * RATIOS.index(key) + 1]
        assert figures[key] == pytest.approx(
            figures[raw_ours] / figures[raw_base], rel=0.02, abs=0.002
        )
    assert figures["targets"] == {
        "queue_vs_xadd": 0.5,
        "db_vs_insert": 0.85,
        "journal_vs_fsync": 6,
        "drain_vs_copy": 0.7,
    }
    for key in ("drain_1m_s", "drain_peak_mb", "drain_peak_backlog_mb"):
        assert isinstance(figures[key], float) and figures[key] > 0, key
