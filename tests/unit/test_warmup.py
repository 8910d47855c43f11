"""Cache warming: background, retries with backoff, bounded time, bounded parallelism."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from reference.cache import JSON, CacheResult, HybridCache, Loader
from reference.warmup import WarmupPolicy, start_warm_up, warm_up
from tests.cache_support import cache_settings, make_cache, redis_breaker

FAST = WarmupPolicy(attempts=3, backoff_initial_s=0.001, backoff_max_s=0.004, total_timeout_s=2)


@pytest.fixture
async def cache() -> AsyncIterator[HybridCache]:
    settings = cache_settings(disable_redis=True)
    async with make_cache(settings, redis_breaker(settings)) as c:
        yield c


class Source:
    """A loader that fails its first `failures` calls, optionally blocking first."""

    def __init__(self, value: JSON, failures: int = 0, gate: asyncio.Event | None = None) -> None:
        self.value, self.failures, self.gate = value, failures, gate
        self.calls = 0

    async def __call__(self) -> JSON:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.calls <= self.failures:
            raise ConnectionError("source unavailable")
        return self.value


async def test_start_returns_at_once_and_loads_in_the_background(cache: HybridCache) -> None:
    """start_warm_up does not wait for the loaders; the keys land in L1 afterwards."""
    gate = asyncio.Event()
    task = start_warm_up(cache, {"a": Source(1, gate=gate), "b": Source(2, gate=gate)}, FAST)
    await asyncio.sleep(0.01)
    assert not task.done()
    gate.set()
    report = await asyncio.wait_for(task, 2.0)
    assert report.loaded == ("a", "b") and not report.failed and not report.timed_out
    assert await cache.get("a") == CacheResult(1, "l1")


async def test_loader_errors_are_retried_then_given_up(cache: HybridCache) -> None:
    """A flaky loader succeeds on retry; a broken one fails after `attempts`; None is absent."""
    flaky, broken, missing = Source("ok", failures=2), Source("x", failures=99), Source(None)
    report = await asyncio.wait_for(
        warm_up(cache, {"flaky": flaky, "broken": broken, "missing": missing}, FAST), 2.0
    )
    assert report.loaded == ("flaky",)
    assert report.failed == ("broken",)
    assert report.absent == ("missing",)
    assert (flaky.calls, broken.calls, missing.calls) == (3, 3, 1)
    assert await cache.get("flaky") == CacheResult("ok", "l1")


async def test_total_time_is_bounded(cache: HybridCache) -> None:
    """A loader that hangs is cut off at total_timeout_s; the others are still loaded."""
    policy = WarmupPolicy(attempts=1, total_timeout_s=0.1)
    hang = Source(1, gate=asyncio.Event())
    report = await asyncio.wait_for(warm_up(cache, {"ok": Source(1), "hang": hang}, policy), 1.0)
    assert report.timed_out
    assert report.loaded == ("ok",) and report.failed == ("hang",)
    assert report.elapsed_s < 0.5


async def test_parallelism_is_bounded(cache: HybridCache) -> None:
    """No more than `concurrency` loaders run at once."""
    running = peak = 0

    def loader(value: int) -> Source:
        class Tracked(Source):
            async def __call__(self) -> JSON:
                nonlocal running, peak
                running += 1
                peak = max(peak, running)
                await asyncio.sleep(0.005)
                running -= 1
                return value

        return Tracked(value)

    policy = WarmupPolicy(concurrency=2, total_timeout_s=2)
    report = await warm_up(cache, {f"k{i}": loader(i) for i in range(8)}, policy)
    assert len(report.loaded) == 8
    assert peak == 2


def test_policy_rejects_nonsense() -> None:
    """WarmupPolicy validates its values."""
    with pytest.raises(ValueError):
        WarmupPolicy(attempts=0)
    with pytest.raises(ValueError):
        WarmupPolicy(backoff_initial_s=2, backoff_max_s=1)
    with pytest.raises(ValueError):
        WarmupPolicy(total_timeout_s=0)


async def test_waits_for_the_subscription_before_loading() -> None:
    """Loads start only once the cache's subscription is up (or the wait ran out)."""

    class Recorder:
        def __init__(self) -> None:
            self.events: list[str] = []

        async def wait_subscribed(self, timeout_s: float) -> bool:
            self.events.append(f"wait {timeout_s:g}")
            await asyncio.sleep(0.01)
            return True

        async def get_or_load(
            self, key: str, loader: Loader, ttl_s: float | None = None
        ) -> CacheResult | None:
            self.events.append(f"load {key}")
            return CacheResult(await loader(), "loader")

    cache = Recorder()
    policy = WarmupPolicy(subscription_wait_s=0.5, total_timeout_s=2)
    report = await warm_up(cache, {"a": Source(1), "b": Source(2)}, policy)
    assert report.loaded == ("a", "b")
    assert cache.events == ["wait 0.5", "load a", "load b"]
