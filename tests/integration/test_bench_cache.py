"""`stormproof bench cache --json` in quick mode: one JSON object with positive figures
(the targets are reported by the bench, not checked here)."""

from __future__ import annotations

import json

import pytest

from scenarios.bench import cache
from scenarios.pytest_plugin import unavailable
from scenarios.stack import StackError

pytestmark = pytest.mark.integration

HEADLINES = ("l1_hit_ratio", "l2_hit_ratio", "breaker_overhead_us", "open_get_ratio")
RAW = (
    "ttlcache_get_us",
    "ttlcache_async_get_us",
    "l1_hit_us",
    "l2_hit_us",
    "bare_get_us",
    "noop_us",
    "breaker_call_us",
    "breaker_permit_us",
    "open_miss_us",
)


def test_quick_bench_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 0 and a single JSON object: the four headline keys and the raw µs figures, all
    positive numbers, with the targets alongside."""
    try:
        code = cache.main(json_output=True, quick=True)
    except StackError as exc:
        unavailable(f"the bench's stack cannot start: {exc}")
    out = capsys.readouterr().out.strip()
    assert code == 0
    assert len(out.splitlines()) == 1
    report = json.loads(out)
    for key in HEADLINES:
        assert isinstance(report[key], int | float) and report[key] > 0, key
    for key in RAW:
        value = report["figures_us"][key]
        assert isinstance(value, int | float) and value > 0, key
    assert set(report["targets"]) == set(HEADLINES)
