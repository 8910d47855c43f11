"""ResilienceMetrics: counters on an injected registry, the breaker listener, the snapshot."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from reference.breaker import BreakerConfig, CircuitBreaker, CircuitState
from reference.clock import FakeClock
from reference.metrics import ResilienceMetrics

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


def sample(metrics: ResilienceMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_uses_a_fresh_registry_by_default() -> None:
    """Two instances never collide, and nothing lands in the global registry."""
    a, b = ResilienceMetrics(), ResilienceMetrics()
    assert a.registry is not b.registry and a.registry is not REGISTRY
    a.record_cache_miss()
    assert sample(a, "stormproof_cache_misses_total") == 1.0
    assert sample(b, "stormproof_cache_misses_total") == 0.0
    assert REGISTRY.get_sample_value("stormproof_cache_misses_total") is None


def test_uses_the_injected_registry() -> None:
    """Metrics register on the registry passed in."""
    registry = CollectorRegistry()
    metrics = ResilienceMetrics(registry)
    metrics.record_cache_hit("l1")
    assert registry.get_sample_value("stormproof_cache_hits_total", {"tier": "l1"}) == 1.0


def test_cache_counters() -> None:
    """Hits per tier, misses, stale served, loader fallbacks and L2 errors per kind."""
    m = ResilienceMetrics()
    m.record_cache_hit("l1")
    m.record_cache_hit("l1")
    m.record_cache_hit("l2")
    m.record_cache_miss()
    m.record_stale_served()
    m.record_loader_fallback()
    m.record_l2_error("timeout")
    m.record_l2_error("rejected")
    m.record_l2_error("rejected")
    assert sample(m, "stormproof_cache_hits_total", tier="l1") == 2.0
    assert sample(m, "stormproof_cache_hits_total", tier="l2") == 1.0
    assert sample(m, "stormproof_cache_misses_total") == 1.0
    assert sample(m, "stormproof_cache_stale_served_total") == 1.0
    assert sample(m, "stormproof_cache_loader_fallbacks_total") == 1.0
    assert sample(m, "stormproof_cache_l2_errors_total", kind="error") == 0.0
    assert sample(m, "stormproof_cache_l2_errors_total", kind="timeout") == 1.0
    assert sample(m, "stormproof_cache_l2_errors_total", kind="rejected") == 2.0


def test_audit_and_journal_metrics() -> None:
    """Audit events per path, attempt failures, unavailable, journal and recovery counts."""
    m = ResilienceMetrics()
    m.record_audit_event("queue")
    m.record_audit_event("file")
    m.record_audit_attempt_failure("queue")
    m.record_audit_unavailable()
    m.set_journal_backlog(42)
    m.record_journal_corrupt()
    m.record_journal_corrupt(2)
    m.record_recovery_replayed(40)
    assert sample(m, "stormproof_audit_events_total", path="queue") == 1.0
    assert sample(m, "stormproof_audit_events_total", path="db") == 0.0
    assert sample(m, "stormproof_audit_events_total", path="file") == 1.0
    assert sample(m, "stormproof_audit_attempt_failures_total", path="queue") == 1.0
    assert sample(m, "stormproof_audit_failures_total") == 1.0
    assert sample(m, "stormproof_journal_backlog") == 42.0
    assert sample(m, "stormproof_journal_corrupt_records_total") == 3.0
    assert sample(m, "stormproof_recovery_replayed_total") == 40.0


def test_redis_failure_records_count_and_wall_time() -> None:
    """A Redis failure increments the counter and stamps the injected wall clock."""
    m = ResilienceMetrics(clock=FakeClock(wall=1_700_000_000.25))
    m.record_redis_failure()
    m.record_redis_failure()
    assert sample(m, "stormproof_redis_failures_total") == 2.0
    assert sample(m, "stormproof_redis_last_failure_timestamp_seconds") == 1_700_000_000.25


def test_breaker_gauges_start_closed_for_known_breakers() -> None:
    """Named breakers are published as CLOSED (0) before any transition."""
    m = ResilienceMetrics(breakers=["redis", "database"])
    assert sample(m, "stormproof_breaker_state", breaker="redis") == 0.0
    assert sample(m, "stormproof_breaker_state", breaker="database") == 0.0


async def test_breaker_listener_follows_transitions() -> None:
    """Wired as a listener, the gauge tracks the state and transitions are counted once."""
    m = ResilienceMetrics()
    clock = FakeClock()
    breaker = CircuitBreaker("redis", BreakerConfig(1, 5.0, 1), clock)
    m.watch_breaker(breaker)

    async def boom() -> None:
        raise ConnectionError

    async def fine() -> None:
        return None

    with pytest.raises(ConnectionError):
        await breaker.call(boom)
    assert sample(m, "stormproof_breaker_state", breaker="redis") == 2.0
    clock.advance(5.0)
    assert breaker.state is HALF_OPEN
    assert sample(m, "stormproof_breaker_state", breaker="redis") == 1.0
    await breaker.call(fine)
    assert sample(m, "stormproof_breaker_state", breaker="redis") == 0.0

    def transitions(old: CircuitState, new: CircuitState) -> float | None:
        return sample(
            m,
            "stormproof_breaker_transitions_total",
            breaker="redis",
            from_state=old.value,
            to_state=new.value,
        )

    assert transitions(CLOSED, OPEN) == 1.0
    assert transitions(OPEN, HALF_OPEN) == 1.0
    assert transitions(HALF_OPEN, CLOSED) == 1.0
    assert transitions(HALF_OPEN, OPEN) is None


def test_watch_breaker_publishes_current_state() -> None:
    """watch_breaker sets the gauge from the breaker's state at once (e.g. held open)."""
    m = ResilienceMetrics(breakers=())
    breaker = CircuitBreaker("redis", BreakerConfig())
    breaker.hold_open(True)
    m.watch_breaker(breaker)
    assert sample(m, "stormproof_breaker_state", breaker="redis") == 2.0


def test_snapshot_before_any_traffic() -> None:
    """Rates are 0.0 and lastFailure is None before anything happened."""
    snap = ResilienceMetrics().snapshot()
    assert (snap.hit_rate_l1, snap.hit_rate_l2, snap.fallback_usage) == (0.0, 0.0, 0.0)
    assert snap.redis_failures == 0 and snap.last_failure is None
    assert (snap.queue_failures, snap.sync_fallbacks, snap.file_backups) == (0, 0, 0)


def test_snapshot_numbers_and_seed_shape() -> None:
    """The snapshot's rates and counts, in the seed's /resilience shape."""
    m = ResilienceMetrics(clock=FakeClock(wall=1_700_000_000.5))
    for _ in range(4):
        m.record_cache_hit("l1")
    m.record_cache_hit("l2")
    m.record_cache_hit("l2")
    m.record_cache_miss()
    m.record_loader_fallback()  # that miss was served by the loader with L2 down
    m.record_stale_served()
    m.record_stale_served()
    m.record_redis_failure()
    m.record_audit_attempt_failure("queue")
    m.record_audit_attempt_failure("queue")
    m.record_audit_attempt_failure("db")
    m.record_audit_event("db")
    m.record_audit_event("file")
    m.record_audit_event("file")
    snap = m.snapshot()
    # 9 reads: 4 l1, 2 l2, 1 miss, 2 stale; 5 reached L2
    assert snap.hit_rate_l1 == pytest.approx(4 / 9)
    assert snap.hit_rate_l2 == pytest.approx(2 / 5)
    assert snap.fallback_usage == pytest.approx(3 / 9)
    assert snap.to_dict() == {
        "redis": {"failures": 1, "lastFailure": "2023-11-14T22:13:20.500Z"},
        "cache": {
            "hitRateL1": snap.hit_rate_l1,
            "hitRateL2": snap.hit_rate_l2,
            "fallbackUsage": snap.fallback_usage,
        },
        "auditoria": {"queueFailures": 2, "syncFallbacks": 1, "fileBackups": 2},
    }


def test_exposition_renders() -> None:
    """The registry renders as Prometheus text with the expected families."""
    m = ResilienceMetrics()
    m.record_cache_hit("l2")
    text = generate_latest(m.registry).decode()
    assert 'stormproof_cache_hits_total{tier="l2"} 1.0' in text
    assert 'stormproof_breaker_state{breaker="redis"} 0.0' in text
