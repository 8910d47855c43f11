"""Staleness relative to faults: allowed (or bounded) during a window, bounded after heal."""

from __future__ import annotations

import pytest

from scenarios.checkers import StalenessChecker, Truth
from scenarios.history import FaultWindow
from scenarios.run.scenario import ScenarioError, parse_scenario
from tests.unit.test_checkers import Synth, assert_json_safe

NO_TRUTH = Truth()
CUT = FaultWindow("redis.i2-down", "redis.i2", 3.0, 7.0, "down")
ALL = FaultWindow("redis-down", "redis", 3.0, 7.0, "down")


def put(s: Synth, t: float, v: int, key: str = "k") -> None:
    s.op("cache_put", t, t + 0.01, key=key, request={"value": {"v": v}}, status=204)


def get(s: Synth, t: float, v: int, instance: str = "i2", key: str = "k") -> None:
    s.op(
        "cache_get",
        t,
        t + 0.01,
        key=key,
        status=200,
        instance=instance,
        response={"key": key, "value": {"v": v}, "source": "l1"},
    )


def relative() -> StalenessChecker:
    return StalenessChecker(during_fault="allowed", after_heal_s=1.0, min_evidence=0)


def test_stale_during_the_cut_off_is_allowed_however_long_the_outage() -> None:
    """Reads of the cut-off instance lag a write by 10 s inside a 12 s window: allowed,
    and reported in their own category; the same history in a 4 s window is judged alike."""
    long_cut = FaultWindow("redis.i2-down", "redis.i2", 3.0, 15.0, "down")
    s = Synth()
    put(s, 1.0, 1)
    put(s, 3.5, 2)
    get(s, 13.6, 1)  # 10 s behind, inside the window
    get(s, 15.5, 2)  # fresh after the heal
    result = relative().check(s.history(long_cut), NO_TRUTH)
    assert result.passed, result.summary
    during = result.details["stale_during_fault"]
    assert during["count"] == 1 and during["allowed"] is True
    assert during["worst_s"] == pytest.approx(10.09)
    assert result.details["stale_after_heal"]["count"] == 0
    assert "during fault: 1 stale of 1 reads (allowed)" in result.summary
    assert_json_safe(result)


def test_stale_after_the_heal_is_flagged_counted_from_the_heal() -> None:
    """An L1 kept after reconnecting: a value overwritten during the cut-off is still
    served 2 s after the heal (bound 1 s). The lag counts from the heal, not the write."""
    s = Synth()
    put(s, 1.0, 1)
    put(s, 4.0, 2)  # while i2 is cut off: the invalidation never reaches it
    get(s, 7.5, 1)  # 0.5 s after heal: within the bound
    get(s, 9.0, 1)  # 2 s after heal: stale after heal
    result = relative().check(s.history(CUT), NO_TRUTH)
    assert not result.passed
    after = result.details["stale_after_heal"]
    assert after["count"] == 1 and after["allowed"] is False
    assert after["worst_s"] == pytest.approx(2.0)
    assert result.summary.startswith("after heal: 1 stale reads of 2 (worst 2.000s > 1.0s)")


def test_a_window_of_another_instance_excuses_nothing() -> None:
    """Instance i1 was never cut off: its stale read inside i2's window is after-heal."""
    s = Synth()
    put(s, 1.0, 1)
    put(s, 3.5, 2)
    get(s, 6.0, 1, instance="i1")
    result = relative().check(s.history(CUT), NO_TRUTH)
    assert not result.passed
    assert result.details["stale_after_heal"]["count"] == 1
    assert result.details["stale_during_fault"]["count"] == 0


def test_a_shared_redis_window_excuses_every_instance_and_a_late_write_is_not_excused() -> None:
    """A `redis` window covers all instances; a write completed long before the window
    started (deadline passed) is not excused by it: its lag counts from the write."""
    s = Synth()
    put(s, 0.5, 1)
    put(s, 1.0, 2)  # deadline 2.0 < window start 3.0
    get(s, 5.0, 1, instance="i1")  # inside the window: during (allowed)
    get(s, 7.5, 1, instance="i1")  # after heal, 6.5 s behind v2: stale
    result = relative().check(s.history(ALL), NO_TRUTH)
    assert result.details["stale_during_fault"]["count"] == 1
    assert result.details["stale_after_heal"]["count"] == 1
    assert result.details["stale_after_heal"]["worst_s"] == pytest.approx(6.49)
    assert not result.passed


def test_a_numeric_during_bound_fails_stale_reads_inside_the_window() -> None:
    """`during_fault = 2.0` bounds reads inside the window instead of allowing them."""
    s = Synth()
    put(s, 1.0, 1)
    put(s, 3.5, 2)
    get(s, 6.5, 1)  # 2.99 s behind inside the window
    result = StalenessChecker(during_fault=2.0, after_heal_s=1.0).check(s.history(CUT), NO_TRUTH)
    assert not result.passed
    assert result.details["stale_during_fault"]["allowed"] is False
    assert result.details["stale"] == 1


def test_the_legacy_absolute_bound_ignores_faults() -> None:
    """`bound_s` is absolute: a read inside a window is judged like any other."""
    s = Synth()
    put(s, 1.0, 1)
    put(s, 3.5, 2)
    get(s, 6.5, 1)
    result = StalenessChecker(bound_s=1.0).check(s.history(CUT), NO_TRUTH)
    assert not result.passed
    assert result.thresholds == {"bound_s": 1.0}


@pytest.mark.parametrize(
    ("expect", "message"),
    [
        ({}, "either bound_s, or after_heal_s"),
        ({"bound_s": 1, "after_heal_s": 1}, "either bound_s"),
        ({"after_heal_s": 1, "during_fault": "sometimes"}, "during_fault is 'allowed'"),
        ({"after_heal_s": -1}, "non-negative"),
        ({"after_heal_s": 1, "when": 2}, "unexpected keyword"),
    ],
)
def test_bad_staleness_expectations_are_one_line_errors(
    expect: dict[str, object], message: str
) -> None:
    """A staleness table that cannot be judged is refused when the scenario is parsed."""
    with pytest.raises(ScenarioError, match=message):
        parse_scenario({"name": "x", "expect": {"staleness": expect}})


def test_audit_paths_of_beneficio_updates_come_from_audit_path() -> None:
    """A beneficio PUT carries its acknowledgement under `audit` ({event_id, path}): the
    audit table names that path, not `unknown` (issue 20)."""
    from scenarios.checkers import AuditChecker

    s = Synth()
    s.op(
        "beneficio_put",
        1,
        1.1,
        key="b1",
        request={"v": 1, "event_id": "e1"},
        response={"id": "b1", "v": 1, "audit": {"event_id": "e1", "path": "queue"}},
        status=200,
    )
    s.op("audit", 2, 2.1, request={"event_id": "e2"}, response={"path": "db"}, status=202)
    truth = Truth(audit_rows={"e1": 1, "e2": 1}, audit_pending=0)
    result = AuditChecker(compare_rows=False, min_evidence=0).check(s.history(), truth)
    assert result.passed, result.summary
    assert result.details["acks_per_path"] == {"queue": 1, "db": 1}


def test_a_write_through_the_cut_off_instance_is_excused_until_its_heal() -> None:
    """A write acknowledged by the cut-off instance i2 only reached its own L1; the
    other instance cannot see it before i2 reconnects (and resyncs): i1's older reads
    are judged from i2's heal, and are stale only once the bound after it has passed."""
    s = Synth()
    put(s, 1.0, 1)
    s.op("cache_put", 4.0, 4.01, key="k", request={"value": {"v": 2}}, status=204, instance="i2")
    get(s, 7.5, 1, instance="i1")  # 0.5 s after i2's heal: fine
    ok = relative().check(s.history(CUT), NO_TRUTH)
    assert ok.passed, ok.summary
    get(s, 8.5, 1, instance="i1")  # 1.5 s after the heal: stale after heal
    late = relative().check(s.history(CUT), NO_TRUTH)
    assert late.details["stale_after_heal"]["count"] == 1
    assert late.details["stale_after_heal"]["worst_s"] == pytest.approx(1.5)


def test_a_read_of_a_version_nobody_wrote_fails() -> None:
    """A value no write ever carried (or only a definitely failed one) is invented."""
    s = Synth()
    put(s, 1.0, 1)
    s.op("cache_put", 2.0, 2.01, "fail", key="k", request={"value": {"v": 2}}, status=500)
    get(s, 3.0, 2, instance="i1")  # only a failed write carried v2
    get(s, 3.5, 7, instance="i1")  # nobody wrote v7
    result = relative().check(s.history(), NO_TRUTH)
    assert not result.passed
    assert result.details["never_written"]["count"] == 2
    assert result.summary.startswith("2 reads of a never-written version")


def test_stale_after_an_overwrite_fails_without_any_fault() -> None:
    """The old value served long after an overwrite was acknowledged: stale."""
    s = Synth()
    put(s, 1.0, 1)
    put(s, 2.0, 2)
    get(s, 2.5, 1, instance="i1")  # 0.49 s: within the bound
    get(s, 5.0, 1, instance="i1")  # 2.99 s after v2: stale
    result = relative().check(s.history(), NO_TRUTH)
    assert not result.passed
    assert result.summary.startswith("after heal: 1 stale reads of 2 (worst 2.990s > 1.0s)")


def test_a_deleted_key_that_comes_back_is_resurrected() -> None:
    """After an acknowledged delete, reading a version written before it is a resurrection."""
    s = Synth()
    put(s, 1.0, 1)
    s.op("cache_delete", 2.0, 2.01, key="k", status=204)
    get(s, 2.5, 1, instance="i1")  # 0.49 s after: within the bound
    get(s, 4.0, 1, instance="i1")  # ~2 s after: the delete was undone
    put(s, 5.0, 2)
    get(s, 5.5, 2, instance="i1")  # a new write after the delete: fine
    result = relative().check(s.history(), NO_TRUTH)
    assert not result.passed
    assert result.details["resurrected"]["count"] == 1
    assert result.details["stale_after_heal"]["count"] == 0
    assert "1 deleted keys came back (> 1.0s)" in result.summary


def test_a_worker_that_reads_an_older_version_than_it_saw_is_non_monotonic() -> None:
    """Process 3 saw v2 (its write still in flight), then v1 two seconds later."""
    s = Synth()
    put(s, 1.0, 1)
    s.op("cache_put", 2.0, 9.0, "info", key="k", request={"value": {"v": 2}})
    s.op("cache_get", 2.5, 2.51, key="k", status=200, response={"value": {"v": 2}}, process=3)
    s.op("cache_get", 5.0, 5.01, key="k", status=200, response={"value": {"v": 1}}, process=3)
    s.op("cache_get", 5.0, 5.01, key="k", status=200, response={"value": {"v": 1}}, process=4)
    result = relative().check(s.history(), NO_TRUTH)
    assert not result.passed
    nm = result.details["non_monotonic"]
    assert nm["count"] == 1 and nm["samples"][0]["staleness_s"] == pytest.approx(2.49)
    assert "1 reads went back to an older version than the worker had seen" in result.summary


def test_cache_and_beneficio_keys_are_different_namespaces() -> None:
    """`/cache/w1-3` v5 does not make `/beneficios/w1-3` v2 stale."""
    s = Synth()
    put(s, 1.0, 5, key="w1-3")
    s.op("beneficio_put", 1.0, 1.1, key="w1-3", request={"v": 2}, status=200)
    s.op("beneficio_get", 5.0, 5.1, key="w1-3", status=200, response={"id": "w1-3", "v": 2})
    assert relative().check(s.history(), NO_TRUTH).passed


def test_a_miss_of_a_written_key_during_the_fault_is_a_failed_read() -> None:
    """404 for a key whose last acknowledged change was a write: counted per phase and
    bounded where the expectation says (a miss after a delete, or with a write or delete
    concurrent with the read, is fine)."""
    from scenarios.checkers import CacheAvailabilityChecker

    window = FaultWindow("redis-down", "redis", 3.0, 7.0, "down")
    s = Synth()
    put(s, 1.0, 1)
    put(s, 1.0, 1, key="gone")
    s.op("cache_delete", 1.5, 1.6, key="gone", status=204)
    s.op("cache_get", 4.0, 4.01, key="k", status=404)  # written, not deleted: lost
    s.op("cache_get", 4.0, 4.01, key="gone", status=404)  # deleted: fine
    s.op("cache_put", 5.0, 5.5, key="k", request={"value": {"v": 2}}, status=204)
    s.op("cache_get", 5.2, 5.21, key="k", status=404)  # write in flight: fine
    s.op("cache_get", 6.0, 6.5, key="gone", status=404)  # fine, gone
    put(s, 6.1, 3, key="late")
    s.op("cache_get", 6.2, 6.6, key="late", status=404)
    s.op("cache_delete", 6.3, 6.4, key="late", status=204)  # concurrent delete: fine
    s.op("cache_get", 8.0, 8.01, key="k", status=404)  # after the heal: reported only
    checker = CacheAvailabilityChecker(min_evidence=0, max_written_misses={"fault": 0})
    result = checker.check(s.history(window), NO_TRUTH)
    assert not result.passed
    assert result.details["written_misses_by_phase"] == {"fault": 1, "recovery": 1}
    assert result.summary.startswith("1 misses of written keys in the fault phase (max 0)")


@pytest.mark.parametrize("target", ["redis.peer", "redis.n1", "redis.n2.peer"])
def test_a_replicated_node_window_covers_every_instance(target: str) -> None:
    """A fault on a node of the replicated Redis (its peer or client proxy) is in front of
    every instance: reads inside it are during-fault (allowed) for i1 and i2 alike, and
    the heal still bounds what comes after (issue 18)."""
    node = FaultWindow(f"{target}-blackhole", target, 3.0, 7.0, "blackhole")
    s = Synth()
    put(s, 1.0, 1)
    put(s, 3.5, 2)
    get(s, 6.0, 1, instance="i1")  # inside the window: during (allowed)
    get(s, 6.5, 1, instance="i2")  # inside the window: during (allowed)
    get(s, 8.5, 1, instance="i1")  # 1.5 s after the heal, still v1: stale
    result = relative().check(s.history(node), NO_TRUTH)
    assert result.details["stale_during_fault"]["count"] == 2
    assert result.details["stale_after_heal"]["count"] == 1
    assert not result.passed
