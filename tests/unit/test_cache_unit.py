"""HybridCache logic without a Redis server: L1 TTL and size, the stale window,
single-flight loads, cancellation, metrics, DISABLE_REDIS, an unreachable Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from reference.breaker import CircuitState
from reference.cache import JSON, CacheResult, HybridCache
from reference.clock import FakeClock
from reference.config import Settings
from reference.metrics import ResilienceMetrics
from tests.cache_support import (
    NetworkCounter,
    cache_settings,
    closed_port,
    counting_redis,
    make_cache,
    redis_breaker,
)

L1_TTL, STALE_WINDOW, TTL = 30.0, 20.0, 60.0


def l1_only(**overrides: object) -> Settings:
    return cache_settings(disable_redis=True, **overrides)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def cache(clock: FakeClock) -> AsyncIterator[HybridCache]:
    settings = l1_only()
    async with make_cache(settings, redis_breaker(settings, clock), clock=clock) as c:
        yield c


class CountingLoader:
    """A loader that counts calls, can block until released and can fail."""

    def __init__(self, value: JSON = "loaded", error: Exception | None = None) -> None:
        self.value = value
        self.error = error
        self.calls = 0
        self.release = asyncio.Event()
        self.release.set()
        self.started = asyncio.Event()

    async def __call__(self) -> JSON:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return self.value


async def test_set_then_get_is_an_l1_hit(cache: HybridCache) -> None:
    """A value just set is served from L1."""
    await cache.set("k", {"a": [1, 2]})
    assert await cache.get("k") == CacheResult({"a": [1, 2]}, "l1")
    assert await cache.get("other") is None


async def test_values_are_detached_from_the_caller(cache: HybridCache) -> None:
    """Mutating the object after `set` does not change the cached value."""
    value: dict[str, JSON] = {"n": 1}
    await cache.set("k", value)
    value["n"] = 2
    found = await cache.get("k")
    assert found is not None and found.value == {"n": 1}


async def test_bad_values_and_ttls_are_caller_errors(cache: HybridCache) -> None:
    """A non-JSON value or a non-positive TTL raises; nothing is cached."""
    with pytest.raises(TypeError):
        await cache.set("k", {1, 2})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await cache.set("k", float("nan"))
    with pytest.raises(ValueError):
        await cache.set("k", 1, ttl_s=0)
    assert await cache.get("k") is None


async def test_l1_ttl_then_stale_window_then_gone(cache: HybridCache, clock: FakeClock) -> None:
    """Past its L1 TTL an entry is served stale (L2 is down) until the window closes."""
    await cache.set("k", "v")
    clock.advance(L1_TTL - 0.01)
    assert await cache.get("k") == CacheResult("v", "l1")
    clock.advance(0.02)
    assert not cache.in_l1("k")
    assert await cache.get("k") == CacheResult("v", "stale")
    clock.advance(STALE_WINDOW - 0.02)
    assert await cache.get("k") == CacheResult("v", "stale")
    clock.advance(0.02)
    assert await cache.get("k") is None


async def test_short_ttl_bounds_l1_and_the_stale_window(
    cache: HybridCache, clock: FakeClock
) -> None:
    """An entry with a TTL shorter than L1's expires from L1 at its own TTL."""
    await cache.set("k", "v", ttl_s=2)
    clock.advance(1.99)
    assert await cache.get("k") == CacheResult("v", "l1")
    clock.advance(0.02)
    assert await cache.get("k") == CacheResult("v", "stale")
    clock.advance(STALE_WINDOW)
    assert await cache.get("k") is None


async def test_zero_stale_window_serves_nothing_stale(clock: FakeClock) -> None:
    """With CACHE_STALE_WINDOW=0 an expired entry is a miss."""
    settings = l1_only(cache_stale_window_s=0.0)
    async with make_cache(settings, redis_breaker(settings, clock), clock=clock) as cache:
        await cache.set("k", "v")
        clock.advance(L1_TTL + 0.01)
        assert await cache.get("k") is None


async def test_l1_is_bounded(clock: FakeClock) -> None:
    """L1 holds at most CACHE_L1_MAX_ITEMS; the least recently used entry goes first."""
    settings = l1_only(cache_l1_max_items=3)
    async with make_cache(settings, redis_breaker(settings, clock), clock=clock) as cache:
        for key in ("a", "b", "c"):
            await cache.set(key, key)
        assert await cache.get("a") is not None  # "b" is now the least recently used
        await cache.set("d", "d")
        assert cache.l1_size() == 3
        assert not cache.in_l1("b")
        assert all(cache.in_l1(k) for k in ("a", "c", "d"))


async def test_delete_drops_l1_and_stale_copy(cache: HybridCache, clock: FakeClock) -> None:
    """After delete the key is neither in L1 nor servable stale."""
    await cache.set("k", "v")
    await cache.delete("k")
    assert await cache.get("k") is None
    clock.advance(L1_TTL + 1)
    assert await cache.get("k") is None


async def test_single_flight_fifty_callers_one_load(cache: HybridCache) -> None:
    """50 concurrent get_or_load of a missing key make exactly one loader call."""
    loader = CountingLoader({"x": 1})
    loader.release.clear()
    calls = [asyncio.create_task(cache.get_or_load("k", loader)) for _ in range(50)]
    await asyncio.wait_for(loader.started.wait(), 1.0)
    await asyncio.sleep(0)
    loader.release.set()
    results = await asyncio.wait_for(asyncio.gather(*calls), 2.0)
    assert loader.calls == 1
    assert all(r == CacheResult({"x": 1}, "loader") for r in results)
    assert await cache.get_or_load("k", loader) == CacheResult({"x": 1}, "l1")
    assert loader.calls == 1


async def test_leader_failure_reaches_every_follower(cache: HybridCache) -> None:
    """When the one loader call fails, every waiting caller gets its exception."""
    loader = CountingLoader(error=LookupError("db down"))
    loader.release.clear()
    calls = [asyncio.create_task(cache.get_or_load("k", loader)) for _ in range(10)]
    await asyncio.wait_for(loader.started.wait(), 1.0)
    loader.release.set()
    outcomes = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 2.0)
    assert loader.calls == 1
    assert all(isinstance(o, LookupError) for o in outcomes)
    loader.error = None
    assert await cache.get_or_load("k", loader) == CacheResult("loaded", "loader")
    assert loader.calls == 2


async def test_cancelled_leader_hands_over_to_a_follower(cache: HybridCache) -> None:
    """Cancelling the leader mid-load does not leave followers hanging: one reloads."""
    loader = CountingLoader("v")
    loader.release.clear()
    leader = asyncio.create_task(cache.get_or_load("k", loader))
    await asyncio.wait_for(loader.started.wait(), 1.0)
    followers = [asyncio.create_task(cache.get_or_load("k", loader)) for _ in range(5)]
    await asyncio.sleep(0.01)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    loader.release.set()
    results = await asyncio.wait_for(asyncio.gather(*followers), 2.0)
    assert loader.calls == 2
    assert all(r is not None and r.value == "v" for r in results)


async def test_cancelled_follower_does_not_disturb_the_load(cache: HybridCache) -> None:
    """A follower that gives up does not cancel the shared load."""
    loader = CountingLoader("v")
    loader.release.clear()
    leader = asyncio.create_task(cache.get_or_load("k", loader))
    await asyncio.wait_for(loader.started.wait(), 1.0)
    quitter = asyncio.create_task(cache.get_or_load("k", loader))
    stayer = asyncio.create_task(cache.get_or_load("k", loader))
    await asyncio.sleep(0.01)
    quitter.cancel()
    loader.release.set()
    assert await asyncio.wait_for(leader, 2.0) == CacheResult("v", "loader")
    assert await asyncio.wait_for(stayer, 2.0) == CacheResult("v", "loader")
    assert quitter.cancelled()
    assert loader.calls == 1


async def test_loader_failure_serves_stale_within_window_only(
    cache: HybridCache, clock: FakeClock
) -> None:
    """L2 down and the loader failing: the stale copy stands in, until the window closes."""
    await cache.set("k", "old")
    clock.advance(L1_TTL + 1)
    failing = CountingLoader(error=ConnectionError("db down"))
    assert await cache.get_or_load("k", failing) == CacheResult("old", "stale")
    clock.advance(STALE_WINDOW)
    with pytest.raises(ConnectionError):
        await cache.get_or_load("k", failing)
    assert failing.calls == 2


async def test_loader_none_is_a_miss_and_not_cached(cache: HybridCache) -> None:
    """A loader answering None gives None, and the next call asks the loader again."""
    loader = CountingLoader(None)
    assert await cache.get_or_load("k", loader) is None
    assert await cache.get_or_load("k", loader) is None
    assert loader.calls == 2


async def test_metrics_count_one_outcome_per_read(clock: FakeClock) -> None:
    """Hits per tier, misses, stale serves and loader fallbacks are counted."""
    settings = l1_only()
    metrics = ResilienceMetrics()
    breaker = redis_breaker(settings, clock)
    async with make_cache(settings, breaker, metrics=metrics, clock=clock) as cache:
        await cache.set("k", 1)
        await cache.get("k")  # l1 hit
        await cache.get("absent")  # miss
        await cache.get_or_load("loaded", CountingLoader(2))  # miss + loader fallback
        clock.advance(L1_TTL + 1)
        await cache.get("k")  # stale
    snap = metrics.snapshot()
    assert snap.hit_rate_l1 == pytest.approx(1 / 4)
    assert snap.fallback_usage == pytest.approx(2 / 4)
    assert metrics.registry.get_sample_value("stormproof_cache_misses_total") == 2
    assert metrics.registry.get_sample_value("stormproof_cache_stale_served_total") == 1


async def test_disable_redis_means_l1_only_and_breaker_held_open(clock: FakeClock) -> None:
    """DISABLE_REDIS: no client, the breaker is held OPEN, L1 is trusted and serves."""
    settings = l1_only()
    breaker = redis_breaker(settings, clock)
    async with make_cache(settings, breaker, clock=clock) as cache:
        assert cache.redis is None
        assert breaker.state is CircuitState.OPEN and breaker.held_open
        clock.advance(3600)
        assert breaker.state is CircuitState.OPEN
        assert await cache.set("k", "v") is False
        assert await cache.get("k") == CacheResult("v", "l1")


async def test_unreachable_redis_never_raises_and_open_breaker_stops_attempts() -> None:
    """Connection refused: calls answer from L1 or miss; once OPEN, no connect, no command."""
    settings = cache_settings(redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    clock = FakeClock()
    breaker = redis_breaker(settings, clock)
    counter = NetworkCounter()
    client = counting_redis(settings.redis_url, settings.redis_op_timeout_s, counter)
    cache = make_cache(settings, breaker, clock=clock, redis=client)
    try:
        assert await cache.set("k", "v") is False
        assert await cache.get("k") == CacheResult("v", "l1")
        assert await cache.get("absent") is None
        assert breaker.state is CircuitState.OPEN
        assert counter.connects == 3
        await cache.start()  # the subscriber must not try either while OPEN
        before = counter.total()
        for i in range(20):
            assert await cache.get("k") == CacheResult("v", "l1")
            assert await cache.get(f"absent{i}") is None
            assert await cache.set(f"n{i}", i) is False
            assert await cache.delete(f"n{i}") is False
            loaded = await cache.get_or_load(f"l{i}", CountingLoader(i))
            assert loaded == CacheResult(i, "loader")
        await asyncio.sleep(0.3)
        assert counter.total() == before
    finally:
        await cache.aclose()
        await client.aclose()


async def test_breaker_recovery_flushes_l1_through_the_overridable_hook() -> None:
    """OPEN then CLOSED again flushes L1; a subclass overriding the hook keeps it."""

    class NoFlush(HybridCache):
        def flush_on_reconnect(self, reason: str) -> None:
            return None

    for kind, flushed in ((HybridCache, True), (NoFlush, False)):
        settings = cache_settings(redis_url=f"redis://127.0.0.1:{closed_port()}/0")
        clock = FakeClock()
        breaker = redis_breaker(settings, clock)
        cache = make_cache(settings, breaker, kind, clock=clock)
        try:
            await cache.set("k", "v")
            assert cache.in_l1("k")
            breaker.force_open()
            clock.advance(settings.breaker_reset_timeout_s)
            permits = [breaker.try_acquire() for _ in range(2)]
            for permit in permits:
                assert permit is not None
                permit.success()
            assert breaker.state is CircuitState.CLOSED
            assert cache.in_l1("k") is not flushed
        finally:
            await cache.aclose()


async def test_a_closed_cache_answers_from_l1_without_redis() -> None:
    """After aclose the cache keeps L1 but makes no network attempt."""
    settings = cache_settings(redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    counter = NetworkCounter()
    client = counting_redis(settings.redis_url, settings.redis_op_timeout_s, counter)
    cache = make_cache(settings, redis_breaker(settings, FakeClock()), redis=client)
    try:
        await cache.set("k", "v")
        await cache.aclose()
        before = counter.total()
        assert await cache.get("k") == CacheResult("v", "l1")
        assert await cache.set("n", 1) is False
        assert await cache.get("absent") is None
        assert cache.redis is None
        assert counter.total() == before
    finally:
        await client.aclose()


async def test_unstorable_value_is_the_callers_error_not_a_redis_failure() -> None:
    """A lone surrogate cannot be stored in Redis: `set` raises ValueError before touching
    L1 or Redis, and the breaker counts nothing."""
    from reference.breaker import BreakerConfig, CircuitBreaker, CircuitState
    from reference.config import Settings

    settings = Settings(redis_url="redis://127.0.0.1:1/0", breaker_failure_threshold=1)
    breaker = CircuitBreaker("redis", BreakerConfig(failure_threshold=1))
    cache = make_cache(settings, breaker)
    try:
        with pytest.raises(ValueError):
            await cache.set("k", "bad \ud800")
        assert not cache.in_l1("k")
        assert breaker.state is CircuitState.CLOSED
    finally:
        await cache.aclose()
