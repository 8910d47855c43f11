"""The final-read checker on synthetic observations: what each key may hold, and the
verdict on diverged, resurrected, never-converging and converged sources."""

from __future__ import annotations

import pytest

from scenarios.checkers import CheckResult, Truth
from scenarios.checkers.final_read import (
    ABSENT,
    AFTER_STOP,
    FinalReadChecker,
    FinalReads,
    Observation,
    expected_states,
)
from scenarios.history import History
from scenarios.run.scenario import ScenarioError, parse_scenario
from tests.unit.test_checkers import Synth, assert_json_safe

SOURCES = ("i1", "i2", "redis", "postgres")
CHECKER = FinalReadChecker(converge_within_s=5.0, min_keys=1)


def written() -> History:
    """Cache key a: v1 then v2 acknowledged; b: written then deleted; c: v1 acknowledged,
    v2 unknown (timeout); beneficio x: v3 acknowledged."""
    s = Synth()
    s.op("cache_put", 1.0, 1.1, key="a", request={"value": {"v": 1}}, status=204)
    s.op("cache_put", 2.0, 2.1, key="a", request={"value": {"v": 2}}, status=204)
    s.op("cache_put", 1.0, 1.1, key="b", request={"value": {"v": 1}}, status=204, process=1)
    s.op("cache_delete", 2.0, 2.1, key="b", status=204, process=1)
    s.op("cache_put", 1.0, 1.1, key="c", request={"value": {"v": 1}}, status=204, process=2)
    s.op("cache_put", 2.0, 7.0, "info", key="c", request={"value": {"v": 2}}, process=2)
    s.op("beneficio_put", 1.0, 1.1, key="x", request={"v": 3, "nome": "n", "valor": 1}, status=200)
    return s.history()


def converged(t: float = 0.0) -> list[Observation]:
    """Every source holding the truth at `t` (Redis has forgotten c; a cache may)."""
    out = []
    for source in ("i1", "i2", "redis"):
        out += [
            Observation(source, "cache", "a", t, 2),
            Observation(source, "cache", "b", t, ABSENT),
            Observation(source, "cache", "c", t, 2 if source != "redis" else ABSENT),
            Observation(source, "beneficio", "x", t, 3 if source != "redis" else ABSENT),
        ]
    out.append(Observation("postgres", "beneficio", "x", t, 3))
    out += [Observation(s, "beneficio", "x", t + 1, 3, AFTER_STOP) for s in ("postgres",)]
    return out


def judge(observations: list[Observation], sources: tuple[str, ...] = SOURCES) -> CheckResult:
    return CHECKER.check(written(), Truth(final_reads=FinalReads(observations, sources, 5.0)))


def test_expected_states_follow_the_last_acknowledged_change_and_later_unknown_ones() -> None:
    """a: its last acknowledged version; b: absent (deleted); c: v1 or the unknown v2."""
    exp = expected_states(written())
    assert exp[("cache", "a")].states == {2}
    assert exp[("cache", "b")].states == {ABSENT}
    assert exp[("cache", "c")].states == {1, 2}
    assert exp[("beneficio", "x")].states == {3}


def test_converged_sources_pass() -> None:
    """Every source holds the truth (a cache source may have forgotten a key): pass."""
    result = judge(converged(0.2))
    assert result.passed, result.summary
    assert "4 written keys converged on 4 sources" in result.summary
    assert_json_safe(result)


def test_converging_within_the_bound_passes() -> None:
    """i2 serves a stale a at first and the truth 1.5 s later (bound 5 s): pass."""
    obs = [Observation("i2", "cache", "a", 0.0, 1), *converged(1.5)]
    result = judge(obs)
    assert result.passed, result.summary
    assert result.details["slowest_convergence_s"] == pytest.approx(1.5)


def test_a_diverged_value_fails() -> None:
    """Redis holds v7 of a, a version nobody wrote: diverged, naming the source."""
    obs = [o for o in converged() if not (o.source == "redis" and o.key == "a")]
    obs.append(Observation("redis", "cache", "a", 5.1, 7))
    result = judge(obs)
    assert not result.passed
    assert result.details["counts"]["diverged"] == 1
    assert "1 keys hold a version never acknowledged or in flight" in result.summary
    assert "[redis: 1]" in result.summary


def test_a_resurrected_delete_fails() -> None:
    """i1 still serves b after its delete was acknowledged: resurrected."""
    obs = [o for o in converged() if not (o.source == "i1" and o.key == "b")]
    obs.append(Observation("i1", "cache", "b", 5.1, 1))
    result = judge(obs)
    assert not result.passed
    assert result.details["counts"]["resurrected"] == 1
    assert "1 deleted keys came back (not converged within 5.0s) [i1: 1]" in result.summary


def test_an_instance_that_never_converges_fails() -> None:
    """i2 serves the old a on every round until the deadline: stale, not converged."""
    obs = [o for o in converged() if not (o.source == "i2" and o.key == "a")]
    obs += [Observation("i2", "cache", "a", t / 4, 1) for t in range(21)]
    result = judge(obs)
    assert not result.passed
    assert result.details["counts"]["stale"] == 1
    assert result.summary.startswith(
        "1 keys stale (older than the last acknowledged write) (not converged within 5.0s) [i2: 1]"
    )
    assert result.details["samples"]["stale"][0]["read"] == 1


def test_an_instance_that_never_answers_fails() -> None:
    """i1 answers 503 to every read of x: error; a source with no observation at all is
    named too."""
    obs = [o for o in converged() if not (o.source == "i1" and o.key == "x")]
    obs.append(Observation("i1", "beneficio", "x", 5.0, None, error="HTTP 503"))
    result = judge(obs, (*SOURCES, "i3"))
    assert not result.passed
    assert "1 keys never answered" in result.summary
    assert "no final read answered by i3" in result.summary


def test_a_missing_beneficio_row_fails_where_a_cache_may_forget() -> None:
    """A beneficio absent from PostgreSQL is missing; the same key absent from Redis (a
    cache-aside copy) is not."""
    obs = [o for o in converged() if not (o.source == "postgres" and o.phase != AFTER_STOP)]
    obs.append(Observation("postgres", "beneficio", "x", 0.0, ABSENT))
    result = judge(obs)
    assert not result.passed
    assert result.details["counts"]["missing"] == 1
    assert "[postgres: 1]" in result.summary


def test_late_convergence_and_a_wrong_value_after_the_stop_fail() -> None:
    """Right only after the bound (late); PostgreSQL wrong after the SIGTERM stop."""
    obs = [o for o in converged() if not (o.source == "i1" and o.key == "a")]
    obs = [o for o in obs if o.phase != AFTER_STOP]
    obs += [Observation("i1", "cache", "a", 6.0, 2)]
    obs += [Observation("postgres", "beneficio", "x", 7.0, 2, AFTER_STOP)]
    result = judge(obs)
    assert not result.passed
    assert result.details["counts"]["late"] == 1
    assert result.details["counts"]["after_stop"] == 1
    assert "keys converged only after 5.0s" in result.summary


def test_sources_that_disagree_fail() -> None:
    """c may be v1 or v2 (its v2 is unknown), but i1 holds v1 and i2 v2: they disagree."""
    obs = [o for o in converged() if not (o.source == "i1" and o.key == "c")]
    obs.append(Observation("i1", "cache", "c", 0.0, 1))
    result = judge(obs)
    assert not result.passed
    assert result.details["counts"]["disagree"] == 1


def test_no_written_key_or_no_reads_is_not_a_pass() -> None:
    """Nothing written: insufficient evidence. Final reads never made: a failure."""
    empty = FinalReadChecker(min_keys=5).check(
        Synth().history(), Truth(final_reads=FinalReads((), SOURCES, 5.0))
    )
    assert not empty.passed and "insufficient evidence: 0 written keys" in empty.summary
    unread = CHECKER.check(written(), Truth())
    assert not unread.passed and "final reads were not made" in unread.summary


def test_the_check_is_on_by_default_where_keys_are_written() -> None:
    """A scenario writing cache keys gets the check without asking; one that only reads
    does not; bad options are one-line errors."""
    base = {"name": "s", "duration_s": 5}
    writes = parse_scenario({**base, "workload": {"mix": {"cache_get": 1, "cache_put": 1}}})
    reads = parse_scenario({**base, "workload": {"mix": {"cache_get": 1, "audit": 1}}})
    assert writes.final_read() == FinalReadChecker()
    assert reads.final_read() is None
    tuned = parse_scenario({**base, "expect": {"final_read": {"converge_within_s": 2}}})
    assert tuned.final_read() == FinalReadChecker(converge_within_s=2)
    with pytest.raises(ScenarioError, match="converge_within_s must be a positive number"):
        parse_scenario({**base, "expect": {"final_read": {"converge_within_s": 0}}})
    with pytest.raises(ScenarioError, match="redis_keys maps"):
        parse_scenario({**base, "expect": {"final_read": {"redis_keys": {"cache": "x"}}}})
