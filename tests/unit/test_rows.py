"""Full-row truth: audit rows compared field by field (`corrupted`), and every beneficio's
row against its last acknowledged write (`lost`, `corrupted`)."""

from __future__ import annotations

from scenarios.checkers import AuditChecker, BeneficiosChecker, Truth
from tests.unit.test_checkers import Synth

SENT = {"actor": "worker-1", "action": "chaos", "entity": "workload", "entity_id": "1"}


def audit(s: Synth, eid: str, payload: dict[str, float]) -> dict[str, object]:
    body = {"event_id": eid, **SENT, "payload": payload}
    s.op("audit", 1, 1.01, request=body, response={"event_id": eid, "path": "db"}, status=202)
    return {k: body[k] for k in ("actor", "action", "entity", "entity_id", "payload")}


def test_a_row_with_a_changed_field_is_corrupted_even_with_its_event_id_kept() -> None:
    """The count per event_id is right; the stored actor is not what was sent."""
    s = Synth()
    good = audit(s, "e1", {"n": 0.25})
    other = audit(s, "e2", {"n": 0.5})
    truth = Truth(
        {"e1": 1, "e2": 1}, 0, audit_full={"e1": [good], "e2": [{**other, "actor": "WORKER-1"}]}
    )
    result = AuditChecker(min_evidence=0).check(s.history(), truth)
    assert not result.passed
    assert result.details["counts"]["corrupted"] == 1
    assert result.details["samples"]["corrupted"] == ["e2"]
    assert result.details["corrupted_fields"] == {"actor": 1}
    assert "1 corrupted" in result.summary
    intact = Truth({"e1": 1, "e2": 1}, 0, audit_full={"e1": [good], "e2": [other]})
    assert AuditChecker(min_evidence=0).check(s.history(), intact).passed


def test_a_payload_kept_as_json_text_is_compared_parsed() -> None:
    """A text column holding the JSON that was sent is intact (the contract asks for the
    same JSON, not a json/jsonb column); text holding other JSON is corrupted."""
    s = Synth()
    good = audit(s, "e1", {"n": 0.25})
    other = audit(s, "e2", {"n": 0.5})
    truth = Truth(
        {"e1": 1, "e2": 1},
        0,
        audit_full={
            "e1": [{**good, "payload": '{"n": 0.25}'}],
            "e2": [{**other, "payload": '{"n": "0.5"}'}],
        },
    )
    result = AuditChecker(min_evidence=0).check(s.history(), truth)
    assert not result.passed
    assert result.details["samples"]["corrupted"] == ["e2"]
    assert result.details["corrupted_fields"] == {"payload": 1}


def test_unread_rows_are_not_a_pass() -> None:
    """Without the stored rows, row comparison cannot show anything: a failure."""
    s = Synth()
    audit(s, "e1", {})
    result = AuditChecker(min_evidence=0).check(s.history(), Truth({"e1": 1}, 0))
    assert not result.passed
    assert "the stored rows were not read" in result.summary


def put(s: Synth, t: float, key: str, v: int, outcome: str = "ok", valor: int = 10) -> None:
    body = {"nome": f"b {key}", "valor": valor, "v": v, "event_id": f"{key}-{v}"}
    s.op(
        "beneficio_put",
        t,
        t + 0.01,
        outcome,  # type: ignore[arg-type]
        key=key,
        request=body,
        response={"id": key, **body} if outcome == "ok" else None,
        status={"ok": 200, "fail": 503}.get(outcome),
    )


def test_beneficios_lost_corrupted_and_allowed_later_writes() -> None:
    """b1 fine; b2 older than its last 200 (lost); b3 valor changed (corrupted); b4 at a
    later version whose PUT timed out (allowed); b5 missing (lost)."""
    s = Synth()
    for key in ("b1", "b2", "b3", "b4", "b5"):
        put(s, 1, key, 1)
        put(s, 2, key, 2)
    put(s, 3, "b4", 3, outcome="info")
    rows = {
        "b1": {"nome": "b b1", "valor": 10, "v": 2},
        "b2": {"nome": "b b2", "valor": 10, "v": 1},
        "b3": {"nome": "b b3", "valor": 99, "v": 2},
        "b4": {"nome": "b b4", "valor": 10, "v": 3},
    }
    result = BeneficiosChecker(min_evidence=0).check(s.history(), Truth(beneficios=rows))
    assert not result.passed
    counts = result.details["counts"]
    assert (counts["lost"], counts["corrupted"], counts["at_later_unknown"]) == (2, 1, 1)
    assert {x["id"] for x in result.details["samples"]["lost"]} == {"b2", "b5"}
    assert result.summary == "2 lost; 1 corrupted"


def test_beneficios_without_rows_or_writes_fail() -> None:
    """No table read, or too few acknowledged writes: nothing was shown."""
    s = Synth()
    put(s, 1, "b1", 1)
    assert "was not read" in BeneficiosChecker(min_evidence=0).check(s.history(), Truth()).summary
    few = BeneficiosChecker().check(
        s.history(), Truth(beneficios={"b1": {"nome": "b b1", "valor": 10, "v": 1}})
    )
    assert not few.passed
    assert "insufficient evidence: 1 acknowledged beneficio writes" in few.summary
