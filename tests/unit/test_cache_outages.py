"""`max_written_misses` across repeated outages: in a dependency's second (third, ...)
outage only keys written since its previous heal count, more exactly since the instance
reconnected after it (its first read answered from L2): the reference empties L1 when it
reconnects, so an older key is a miss by design. In a first outage, every written key."""

from __future__ import annotations

from scenarios.checkers import CacheAvailabilityChecker, Truth
from scenarios.checkers.cache import previous_heal
from scenarios.history import FaultWindow
from scenarios.report.findings import findings
from tests.unit.test_checkers import Synth

NO_TRUTH = Truth()
FIRST = FaultWindow("redis-down", "redis", 3.0, 8.0, "down")
SECOND = FaultWindow("redis-down", "redis", 10.0, 15.0, "down")
PG = FaultWindow("postgres-down", "postgres", 3.0, 8.0, "down")
CHECKER = CacheAvailabilityChecker(min_evidence=0, max_written_misses={"fault": 0})


def put(s: Synth, t: float, key: str) -> None:
    s.op("cache_put", t, t + 0.01, key=key, request={"value": {"v": 1}}, status=204)


def miss(s: Synth, t: float, key: str) -> None:
    s.op("cache_get", t, t + 0.01, key=key, status=404)


def from_l2(s: Synth, t: float, key: str = "any") -> None:
    """A read answered from L2: the instance's breaker had closed (L1 emptied)."""
    response = {"key": key, "value": {"v": 1}, "source": "l2"}
    s.op("cache_get", t, t + 0.01, key=key, status=200, response=response)


def test_previous_heal_is_the_last_heal_of_the_same_target_before_the_window() -> None:
    """Inside a first window: none; inside the second: the first's heal; another target's
    heal does not count; outside every window: none."""
    windows = (FIRST, SECOND)
    assert previous_heal(4.0, windows) is None
    assert previous_heal(11.0, windows) == 8.0
    assert previous_heal(9.0, windows) is None
    assert previous_heal(11.0, (PG, SECOND)) is None


def test_second_outage_counts_only_keys_written_since_the_first_heal() -> None:
    """Window 2: a key written before the first heal and missed → not counted; a key
    written during window 2 and missed → counted; written between the heals, after the
    instance answered from L2 again → counted."""
    s = Synth()
    put(s, 1.0, "old")  # before the first outage: L1 held it, the reconnect emptied it
    put(s, 5.0, "during-1")  # during the first outage (only L1, dropped on the heal)
    from_l2(s, 8.5)  # reconnected
    put(s, 9.0, "between")  # after the heal: L1 holds it
    put(s, 11.0, "during-2")  # during the second: L1 holds it
    miss(s, 12.0, "old")
    miss(s, 12.0, "during-1")
    miss(s, 12.5, "between")
    miss(s, 13.0, "during-2")
    result = CHECKER.check(s.history(FIRST, SECOND), NO_TRUTH)
    assert not result.passed
    assert result.details["written_misses_by_phase"] == {"fault": 4}
    assert result.details["written_misses_judged_by_phase"] == {"fault": 2}
    assert result.summary.startswith("2 misses of written keys in the fault phase (max 0)")


def test_a_write_after_the_heal_before_the_reconnect_is_not_counted() -> None:
    """A key written after the heal while the breaker was still open (no read answered
    from L2 yet) reached only L1 and was dropped at the reconnect: not counted. With no
    L2 answer before window 2 at all, a key written during window 2 still counts."""
    s = Synth()
    put(s, 8.2, "before-reconnect")
    from_l2(s, 9.0)
    put(s, 9.5, "after-reconnect")
    miss(s, 11.0, "before-reconnect")
    miss(s, 11.0, "after-reconnect")
    result = CHECKER.check(s.history(FIRST, SECOND), NO_TRUTH)
    assert result.details["written_misses_judged_by_phase"] == {"fault": 1}
    s = Synth()
    put(s, 8.2, "before-reconnect")
    put(s, 10.5, "during-2")
    miss(s, 11.0, "before-reconnect")
    miss(s, 11.0, "during-2")
    result = CHECKER.check(s.history(FIRST, SECOND), NO_TRUTH)
    assert result.details["written_misses_judged_by_phase"] == {"fault": 1}
    assert result.details["written_misses_by_phase"] == {"fault": 2}


def test_second_outage_with_only_old_keys_missed_passes() -> None:
    """The reference's case: every miss of window 2 is a key written before the first
    heal: reported, not failed (also in the findings table)."""
    s = Synth()
    put(s, 1.0, "old")
    put(s, 7.9, "straddles")  # started before the heal: not after it
    s.op("cache_put", 7.95, 8.2, key="across", request={"value": {"v": 1}}, status=204)
    miss(s, 12.0, "old")
    miss(s, 12.0, "straddles")
    miss(s, 12.0, "across")
    result = CHECKER.check(s.history(FIRST, SECOND), NO_TRUTH)
    assert result.passed, result.summary
    assert result.details["written_misses_by_phase"] == {"fault": 3}
    assert result.details["written_misses_judged_by_phase"] == {}
    [row] = [r for r in findings((result,)) if r.category == "miss of a written key"]
    assert not row.failing and "0 written since the last heal" in row.detail


def test_first_outage_counts_keys_written_since_the_run_start() -> None:
    """A first window has no previous heal: a key written before it and missed counts,
    even when another dependency (PostgreSQL) healed in between."""
    pg_first = FaultWindow("postgres-down", "postgres", 1.0, 2.0, "down")
    s = Synth()
    put(s, 0.5, "old")
    miss(s, 4.0, "old")
    for windows in ((FIRST,), (pg_first, FIRST)):
        result = CHECKER.check(s.history(*windows), NO_TRUTH)
        assert not result.passed
        assert result.details["written_misses_judged_by_phase"] == {"fault": 1}
        [row] = [r for r in findings((result,)) if r.category == "miss of a written key"]
        assert row.failing


def test_a_read_answered_after_the_heal_is_not_an_outage_miss() -> None:
    """Seen in a full-mode run: a read began 30 ms before the heal and answered 97 ms after
    it, when the reconnect had emptied L1 (a key written during the outage, only in L1):
    a 404 then is not a miss of the outage. The same miss answered before the heal is."""
    s = Synth()
    put(s, 5.0, "during")
    s.op("cache_get", 7.97, 8.1, key="during", status=404)
    result = CHECKER.check(s.history(FIRST), NO_TRUTH)
    assert result.passed, result.summary
    assert result.details["written_misses_by_phase"] == {"fault": 1}
    assert result.details["written_misses_judged_by_phase"] == {}
    s = Synth()
    put(s, 5.0, "during")
    s.op("cache_get", 7.9, 7.99, key="during", status=404)
    result = CHECKER.check(s.history(FIRST), NO_TRUTH)
    assert not result.passed
    assert result.details["written_misses_judged_by_phase"] == {"fault": 1}
