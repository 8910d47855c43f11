"""Write availability (refused / unknown shares per kind and segment) and audit.paths."""

from __future__ import annotations

import pytest

from scenarios.checkers import AuditChecker, Truth, WriteAvailabilityChecker
from scenarios.history import FaultWindow
from scenarios.run.scenario import ScenarioError, parse_scenario
from tests.unit.test_checkers import Synth

WINDOW = FaultWindow("postgres-down", "postgres", 10.0, 20.0, "down")


def writes(
    s: Synth,
    start: float,
    end: float,
    *,
    status: int = 202,
    outcome: str = "ok",
    path: str = "queue",
) -> list[str]:
    """An audit write every 0.25 s in [start, end); the acknowledged ids."""
    acked = []
    for n in range(int((end - start) * 4)):
        t = start + n * 0.25
        eid = f"e{len(s.events)}"
        s.op(
            "audit",
            t,
            t + 0.01,
            outcome,  # type: ignore[arg-type]
            request={"event_id": eid},
            response={"event_id": eid, "path": path} if outcome == "ok" else None,
            status=status if outcome != "info" else None,
        )
        if outcome == "ok":
            acked.append(eid)
    return acked


def test_all_audit_writes_refused_during_the_fault_fail_with_the_refused_share() -> None:
    """503 to every audit write while PostgreSQL is down: 100% refused in the window."""
    s = Synth()
    writes(s, 0, 10)
    writes(s, 10, 20, status=503, outcome="fail")
    writes(s, 20, 30)
    result = WriteAvailabilityChecker.from_options({"audit": 0.0}).check(s.history(WINDOW), Truth())
    assert not result.passed
    assert result.summary == (
        "audit: 40 refused + 0 unknown of 40 in fault window 1 (postgres-down) (100.0% > 0.0%)"
    )
    row = result.details["per_kind"]["audit"]["fault window 1 (postgres-down)"]
    assert (row["refused"], row["unknown"], row["writes"]) == (40, 0, 40)


def test_a_422_to_a_valid_request_is_a_refusal() -> None:
    """The workload sends only valid requests: a service answering 422 while a dependency
    is down (an independent target did, for beneficio updates) refuses the write."""
    s = Synth()
    writes(s, 0, 10)
    writes(s, 10, 15)
    writes(s, 15, 20, status=422, outcome="fail")
    writes(s, 20, 30)
    result = WriteAvailabilityChecker.from_options({"audit": 0.0}).check(s.history(WINDOW), Truth())
    assert not result.passed
    assert "20 refused + 0 unknown of 40 in fault window 1" in result.summary


def test_unknown_outcomes_count() -> None:
    """Timeouts are unknown (not accepted), and count against the bound."""
    s = Synth()
    writes(s, 0, 10)
    writes(s, 10, 20)
    writes(s, 20, 30)
    ok = WriteAvailabilityChecker.from_options({"audit": 0.0}).check(s.history(WINDOW), Truth())
    assert ok.passed, ok.summary
    writes(s, 12, 13, outcome="info")
    bad = WriteAvailabilityChecker.from_options({"audit": {"fault": 0.05}}).check(
        s.history(WINDOW), Truth()
    )
    assert not bad.passed
    assert "0 refused + 4 unknown of 44 in fault window 1" in bad.summary


def test_no_write_in_a_judged_segment_is_insufficient_evidence() -> None:
    """A service that stops answering writes cannot pass by having none judged."""
    s = Synth()
    writes(s, 0, 10)
    writes(s, 20, 30)
    result = WriteAvailabilityChecker.from_options({"audit": 0.0}).check(s.history(WINDOW), Truth())
    assert not result.passed
    assert "insufficient evidence: 0 audit writes in fault window 1 (postgres-down)" in (
        result.summary
    )


def test_writes_while_the_target_itself_is_down_are_not_judged() -> None:
    """Refused connections while the target was SIGKILLed (until it answered again), and
    calls cut by the kill just before its start edge was recorded, are not judged."""
    s = Synth()
    writes(s, 0, 10)
    writes(s, 10, 12)
    writes(s, 11.75, 12, outcome="info")  # cut by the kill, just before its recorded edge
    writes(s, 12, 14, status=0, outcome="fail")  # connection refused: target down
    writes(s, 14, 30)
    kill = FaultWindow("target-sigkill", "target", 12.0, 13.0, "sigkill")
    result = WriteAvailabilityChecker.from_options({"audit": 0.0}).check(
        s.history(WINDOW, kill), Truth()
    )
    assert result.passed, result.summary
    assert result.details["excluded_target_down_s"] == [[11.5, pytest.approx(14.01)]]


def test_audit_paths_must_have_carried_acks_in_every_window_of_the_phase() -> None:
    """`paths = { fault = ["queue"] }`: acks went through the database instead: fail."""
    s = Synth()
    acked = writes(s, 0, 10) + writes(s, 10, 20, path="db") + writes(s, 20, 30)
    truth = Truth({e: 1 for e in acked}, 0)
    result = AuditChecker(compare_rows=False, paths={"fault": ["queue"]}).check(
        s.history(WINDOW), truth
    )
    assert not result.passed
    assert "no audit ack through path 'queue' in fault window 1 (postgres-down)" in result.summary
    table = result.details["acks_per_path_per_segment"]
    assert table["fault window 1 (postgres-down)"] == {"db": 40}
    good = AuditChecker(compare_rows=False, paths={"fault": ["db"], "recovery": ["queue"]})
    assert good.check(s.history(WINDOW), truth).passed


@pytest.mark.parametrize(
    ("expect", "message"),
    [
        ({"write_availability": {"cache_get": 0.0}}, "unknown write 'cache_get'"),
        ({"write_availability": {"audit": {"during": 0.0}}}, "unknown phase 'during'"),
        ({"write_availability": {"audit": 1.5}}, r"a share in \[0, 1\]"),
        ({"audit": {"paths": {"between": ["db"]}}}, "audit.paths: unknown phase"),
    ],
)
def test_bad_write_expectations_are_one_line_errors(
    expect: dict[str, object], message: str
) -> None:
    """Mistakes in the new expectations are refused when the scenario is parsed."""
    with pytest.raises(ScenarioError, match=message):
        parse_scenario({"name": "x", "expect": expect})


def test_recovery_mode_is_admin_or_scheduled() -> None:
    """`recovery = "scheduled"`: the harness never calls /admin/recovery; other values
    are refused when the scenario is parsed."""
    assert parse_scenario({"name": "x", "recovery": "scheduled"}).recovery == "scheduled"
    assert parse_scenario({"name": "x"}).recovery == "admin"
    with pytest.raises(ScenarioError, match="recovery must be one of admin, scheduled"):
        parse_scenario({"name": "x", "recovery": "manual"})


def test_a_window_where_refusal_is_expected_demands_no_ack_evidence() -> None:
    """`exempt_windows`: inside the named window no acknowledgement is expected (the
    journal's disk failing with both other paths down), so none is demanded there."""
    disk = FaultWindow("journal-disk_full", "journal", 12.0, 16.0, "disk_full")
    s = Synth()
    acked = writes(s, 0, 12) + writes(s, 12, 16, status=503, outcome="fail") + writes(s, 16, 30)
    truth = Truth({e: 1 for e in acked}, 0)
    strict = AuditChecker(compare_rows=False).check(s.history(WINDOW, disk), truth)
    assert "insufficient evidence: 0 audit acks in fault window 2 (journal-disk_full)" in (
        strict.summary
    )
    exempt = AuditChecker(compare_rows=False, exempt_windows=("journal-disk_full",))
    assert exempt.check(s.history(WINDOW, disk), truth).passed
