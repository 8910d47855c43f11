"""Keys written during a Redis outage that overflow the resync set (issue 12, item 8).

The cache remembers the keys whose write did not reach Redis, to delete them there when it
answers again. The set is bounded; a key pushed out of it used to be forgotten silently,
leaving an older value in Redis that every instance would read. Now the loss is counted
(`stormproof_cache_outage_keys_dropped_total`), logged, and the resync flushes the whole
cache namespace in Redis and tells every instance to drop its L1.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from reference.cache import HybridCache
from reference.invalidation import SubscriberTiming
from reference.metrics import ResilienceMetrics
from scenarios.stack import Stack
from tests.cache_support import cache_settings, make_cache, redis_breaker

pytestmark = pytest.mark.integration
PREFIX = "overflow-test:"


@pytest.fixture
async def two_caches(
    stormproof_stack: Stack,
) -> AsyncIterator[tuple[HybridCache, HybridCache, ResilienceMetrics]]:
    """A writer whose resync set holds 3 keys, and a reader: both through the proxy; and
    the writer's metrics."""
    caches = []
    metrics = ResilienceMetrics()
    for name, max_items in (("writer", 3), ("reader", 100)):
        settings = cache_settings(
            redis_url=stormproof_stack.urls.redis_url,
            cache_l1_max_items=max_items,
            cache_l2_key_prefix=PREFIX,
            instance_id=name,
        )
        cache = make_cache(
            settings,
            redis_breaker(settings),
            metrics=metrics if name == "writer" else ResilienceMetrics(),
            timing=SubscriberTiming(ping_interval_s=0.2),
        )
        await cache.start()
        assert await cache.wait_subscribed(5.0)
        caches.append(cache)
    try:
        yield caches[0], caches[1], metrics
    finally:
        for cache in caches:
            await cache.aclose()


async def test_overflowing_outage_keys_flush_the_namespace(
    stormproof_stack: Stack, two_caches: tuple[HybridCache, HybridCache, ResilienceMetrics]
) -> None:
    """`k0` is cached as "old"; Redis is cut off from the writer's side; the writer sets
    k0..k5 (six keys for a set of three: k0 is pushed out). After healing, Redis must not
    serve "old" for k0 to the reader, and the dropped keys are counted."""
    writer, reader, metrics = two_caches
    direct = aioredis.Redis.from_url(stormproof_stack.urls.redis_direct_url, socket_timeout=5)
    try:
        await writer.set("k0", "old")
        assert await direct.get(PREFIX + "k0") is not None
        proxy = stormproof_stack.redis_proxy
        proxy.disable()
        try:
            for i in range(6):
                await writer.set(f"k{i}", f"new-{i}")
        finally:
            proxy.enable()
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline and await direct.get(PREFIX + "k0") is not None:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        assert await direct.get(PREFIX + "k0") is None, "Redis still holds the pre-outage k0"
        got = await reader.get("k0")
        assert got is None or got.value != "old", got
        dropped = metrics.registry.get_sample_value("stormproof_cache_outage_keys_dropped_total")
        assert dropped == 3.0
    finally:
        await direct.aclose()
