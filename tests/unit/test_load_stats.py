"""Per-phase load statistics: CSV parsing, thresholds, acknowledged ids, the table."""

from __future__ import annotations

import csv
from pathlib import Path

from scenarios.load.command import exit_code, options_from_args
from scenarios.load.stats import (
    PhaseStats,
    Thresholds,
    VariantResult,
    Verdict,
    audit_verdicts,
    fault_verdict,
    phase_durations,
    read_acks,
    read_phase_stats,
    read_verdicts,
    render_table,
)

HEADER = [
    "Type",
    "Name",
    "Request Count",
    "Failure Count",
    "Median Response Time",
    "Average Response Time",
    "Min Response Time",
    "Max Response Time",
    "Average Content Size",
    "Requests/s",
    "Failures/s",
    "50%",
    "66%",
    "75%",
    "80%",
    "90%",
    "95%",
    "98%",
    "99%",
    "99.9%",
    "99.99%",
    "100%",
]


def _row(kind: str, name: str, count: int, fails: int, p50: str, p95: str, p99: str) -> list[str]:
    return [
        kind,
        name,
        str(count),
        str(fails),
        p50,
        "1",
        "1",
        "1",
        "1",
        "1",
        "0",
        p50,
        p50,
        p50,
        p50,
        p95,
        p95,
        p99,
        p99,
        p99,
        p99,
        p99,
    ]


def _csv(tmp_path: Path, rows: list[list[str]]) -> Path:
    path = tmp_path / "locust_stats.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def _stats(phase: str, kind: str, n: int, fails: int, p99: float, secs: float = 10.0) -> PhaseStats:
    return PhaseStats(phase, kind, n, fails, secs, 5.0, 10.0, p99)


def test_phase_rows_are_read_and_endpoint_rows_ignored(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        [
            _row("GET", "[baseline] GET /beneficios/[id]", 900, 0, "5", "9", "12"),
            _row("PHASE", "[baseline] reads", 1000, 0, "5", "10", "20"),
            _row("PHASE", "[fault] reads", 950, 2, "6", "30", "N/A"),
            _row("PHASE", "[warmup] reads", 50, 0, "5", "10", "20"),
            _row("", "Aggregated", 2000, 2, "5", "10", "20"),
        ],
    )
    stats = read_phase_stats(path, {"baseline": 10.0, "fault": 9.5})
    assert set(stats) == {("baseline", "reads"), ("fault", "reads")}
    base = stats[("baseline", "reads")]
    assert (base.requests, base.failures, base.p99_ms, base.rps) == (1000, 0, 20.0, 100.0)
    assert stats[("fault", "reads")].p99_ms is None
    assert stats[("fault", "reads")].rps == 100.0


def test_phase_durations_skip_the_unfinished_phase() -> None:
    log = {
        "phases": [
            {"name": "baseline", "start_s": 2.0, "end_s": 8.0},
            {"name": "stop", "start_s": 8.0, "end_s": None},
        ]
    }
    assert phase_durations(log) == {"baseline": 6.0}


def test_p99_bound_is_relative_or_absolute_whichever_is_larger() -> None:
    t = Thresholds(p99_factor=3.0, p99_slack_ms=200.0)
    assert t.p99_bound_ms(10.0) == 210.0
    assert t.p99_bound_ms(150.0) == 450.0


def test_read_thresholds_pass_and_fail() -> None:
    good = {
        ("baseline", "reads"): _stats("baseline", "reads", 1000, 0, 20.0),
        ("fault", "reads"): _stats("fault", "reads", 950, 0, 150.0),
    }
    assert all(v.passed for v in read_verdicts(good, Thresholds()))
    bad = {
        ("baseline", "reads"): _stats("baseline", "reads", 1000, 0, 20.0),
        ("fault", "reads"): _stats("fault", "reads", 100, 3, 5000.0),
    }
    failed = {v.name for v in read_verdicts(bad, Thresholds()) if not v.passed}
    assert failed == {"reads.fault.failures", "reads.fault.p99", "reads.fault.rps"}


def test_missing_phase_is_a_failure_not_a_pass() -> None:
    verdicts = read_verdicts({}, Thresholds())
    assert [v.passed for v in verdicts] == [False]


def test_audit_loss_and_an_empty_check() -> None:
    lost = audit_verdicts({"a", "b"}, {"a"}, 0)
    assert [v.passed for v in lost] == [False, True]
    assert "1 of 2" in lost[0].detail
    assert not audit_verdicts(set(), set(), 0)[0].passed  # nothing acknowledged proves nothing
    assert not audit_verdicts({"a"}, {"a"}, 3)[1].passed


def test_fault_verdict() -> None:
    assert fault_verdict({}, "none") is None
    applied = {"name": "redis-down", "applied_at": 8.0, "reverted_at": 14.0, "error": None}
    assert fault_verdict({"fault": applied}, "redis-down") == Verdict(
        "fault.injected", True, "redis-down applied at +8.0s, reverted at +14.0s"
    )
    never_reverted = fault_verdict({"fault": {**applied, "reverted_at": None}}, "redis-down")
    assert never_reverted is not None and not never_reverted.passed
    no_log = fault_verdict({}, "redis-down")  # Locust died before the fault phase
    assert no_log is not None and not no_log.passed
    failed = fault_verdict({"fault": {**applied, "error": "HTTP 500"}}, "redis-down")
    assert failed is not None and not failed.passed


def test_acks_from_the_file_and_its_worker_siblings(tmp_path: Path) -> None:
    base = tmp_path / "acks.txt"
    base.write_text("a\nb\n")
    (tmp_path / "acks.txt.123").write_text("c\n\n")
    (tmp_path / "other.txt").write_text("z\n")
    assert read_acks(base) == {"a", "b", "c"}


def test_table_and_ratio_for_two_variants() -> None:
    ref = VariantResult(
        "reference",
        stats={
            ("baseline", "reads"): _stats("baseline", "reads", 1000, 0, 20.0),
            ("fault", "reads"): _stats("fault", "reads", 990, 0, 40.0),
        },
    )
    naive = VariantResult(
        "naive",
        stats={
            ("baseline", "reads"): _stats("baseline", "reads", 1000, 0, 20.0),
            ("fault", "reads"): _stats("fault", "reads", 100, 9, 5000.0),
        },
    )
    table = render_table([ref, naive])
    assert "reference" in table and "naive" in table
    assert "RPS ratio fault/baseline (reads): reference 0.99, naive 0.10" in table


def test_exit_code_for_both_means_the_load_tells_them_apart() -> None:
    """With both variants, 0 only when the naive one fails a fault-phase read threshold."""
    passed = VariantResult("reference", verdicts=[Verdict("x", True, "")])
    failed = VariantResult("naive", verdicts=[Verdict("reads.fault.rps", False, "")])
    broken = VariantResult("naive", verdicts=[Verdict("load.completed", False, "")])
    assert exit_code([passed]) == 0
    assert exit_code([failed]) == 1
    assert exit_code([passed, failed]) == 0
    assert exit_code([passed, broken]) == 1
    assert exit_code([passed, VariantResult("naive", verdicts=[Verdict("x", True, "")])]) == 1


def test_options_split_the_duration_and_refuse_process_faults() -> None:
    import argparse

    import pytest

    from scenarios.cli import build_parser
    from scenarios.faults import FaultError

    args = build_parser().parse_args(["load", "--duration", "30", "--variant", "both"])
    options = options_from_args(args)
    assert options.phases == (10.0, 10.0, 10.0)
    assert options.variants == ("reference", "naive")
    bad: argparse.Namespace = build_parser().parse_args(["load", "--fault", "redis-sigkill"])
    with pytest.raises(FaultError):
        options_from_args(bad)
