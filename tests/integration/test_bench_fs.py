"""`stormproof bench fs --json` in quick mode: one JSON object with the mount's overhead."""

from __future__ import annotations

import json

import pytest

from scenarios.bench import fs
from scenarios.fs.availability import unavailable_reason
from scenarios.pytest_plugin import unavailable

pytestmark = pytest.mark.integration


def test_quick_bench_prints_the_fs_journal_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 0, one JSON object; the ratio is the two measured rates' quotient."""
    reason = unavailable_reason()
    if reason:
        unavailable(f"FUSE is not available: {reason}")
    assert fs.main(json_output=True, quick=True) == 0
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1
    figures = json.loads(out)
    assert figures["plain_appends_per_s"] > 0 and figures["mount_appends_per_s"] > 0
    assert figures["mount_fsyncs"] > 0  # the journal really went through the mount
    assert figures["fs_journal_ratio"] == pytest.approx(
        figures["mount_appends_per_s"] / figures["plain_appends_per_s"], rel=1e-6
    )
    assert figures["target"] == 0.3
