"""The final-read checker with a key that may be either absent or a version (an
acknowledged delete followed by a write left unknown, as a SIGSTOPped target leaves
them): judged and reported, not a crash (found by `property --examples 20 --seed 1`)."""

from __future__ import annotations

from scenarios.checkers import Truth
from scenarios.checkers.final_read import (
    ABSENT,
    FinalReadChecker,
    FinalReads,
    Observation,
    expected_states,
)
from tests.unit.test_checkers import Synth, assert_json_safe


def test_a_key_absent_or_written_is_judged_without_crashing() -> None:
    """Key k: v1 acknowledged, deleted (acknowledged), v2 unknown: absent or v2 are
    allowed; an instance still holding v1 fails, and its sample lists both states."""
    s = Synth()
    s.op("cache_put", 1.0, 1.1, key="k", request={"value": {"v": 1}}, status=204)
    s.op("cache_delete", 2.0, 2.1, key="k", status=204)
    s.op("cache_put", 3.0, 9.0, "info", key="k", request={"value": {"v": 2}})
    history = s.history()
    assert expected_states(history)[("cache", "k")].states == {ABSENT, 2}
    reads = FinalReads([Observation("i1", "cache", "k", 6.0, 1)], ("i1",), 5.0)
    checker = FinalReadChecker(converge_within_s=5.0, min_keys=1, redis_keys={}, postgres=False)
    result = checker.check(history, Truth(final_reads=reads))
    assert not result.passed
    assert "crashed" not in result.summary
    samples = [x for v in result.details["samples"].values() for x in v]
    assert samples[0]["allowed"] == ["absent", 2]
    assert_json_safe(result)
