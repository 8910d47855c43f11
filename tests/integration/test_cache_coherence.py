"""Two cache instances on one Redis: pub/sub invalidations and the flush on reconnect.

Instance A goes through the stack's `redis` proxy; instance B through a second Toxiproxy
proxy to the same Redis, so B alone can be cut off.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from reference.breaker import CircuitState
from reference.cache import JSON, CacheResult, HybridCache
from reference.warmup import warm_up
from scenarios.ports import free_port
from scenarios.stack import Stack
from scenarios.toxiproxy import Proxy, ProxySpec, ToxiproxyError
from tests.cache_support import FAST_SUBSCRIBER, cache_settings, read_into_l1, redis_breaker
from tests.cache_support import make_cache as build_cache

pytestmark = pytest.mark.integration

EVICTION_BOUND_S = 0.5
RECONNECT_BOUND_S = 5.0


class NoFlushOnReconnect(HybridCache):
    """The broken variant: keeps L1 when the subscription comes back."""

    def flush_on_reconnect(self, reason: str) -> None:
        return None


@pytest.fixture
def side_proxy(stormproof_stack: Stack) -> Iterator[Proxy]:
    """A second proxy to the stack's Redis (deleted at teardown)."""
    upstream = stormproof_stack.redis_proxy.upstream
    spec = ProxySpec(f"redis_b_{uuid.uuid4().hex[:8]}", f"127.0.0.1:{free_port()}", upstream)
    proxy = stormproof_stack.toxiproxy.create_proxy(spec)
    try:
        yield proxy
    finally:
        try:
            proxy.delete()
        except ToxiproxyError:
            pass


def make_cache(url: str, kind: type[HybridCache] = HybridCache, name: str = "a") -> HybridCache:
    settings = cache_settings(redis_url=url, breaker_reset_timeout_s=0.5)
    return build_cache(
        settings, redis_breaker(settings), kind, timing=FAST_SUBSCRIBER, instance_id=name
    )


@pytest.fixture
async def cache_a(stormproof_stack: Stack) -> AsyncIterator[HybridCache]:
    async with make_cache(stormproof_stack.urls.redis_url) as cache:
        assert await cache.wait_subscribed(RECONNECT_BOUND_S)
        yield cache


async def wait_for(condition: object, bound_s: float) -> float:
    """Poll `condition()` until true; the time it took (fails after `bound_s`)."""
    assert callable(condition)
    started = time.monotonic()
    while not condition():
        elapsed = time.monotonic() - started
        assert elapsed < bound_s, f"condition not met within {bound_s} s"
        await asyncio.sleep(0.005)
    return time.monotonic() - started


async def test_set_on_one_instance_evicts_the_other(
    cache_a: HybridCache, side_proxy: Proxy
) -> None:
    """A's set and delete evict B's L1 entry within the bound; B then reads L2."""
    async with make_cache(f"redis://{side_proxy.listen}/0", name="b") as cache_b:
        assert await cache_b.wait_subscribed(RECONNECT_BOUND_S)
        key = f"k-{uuid.uuid4().hex[:6]}"
        await cache_a.set(key, {"v": 1})
        await read_into_l1(cache_b, key, {"v": 1})
        assert await cache_b.get(key) == CacheResult({"v": 1}, "l1")

        await cache_a.set(key, {"v": 2})
        took = await wait_for(lambda: not cache_b.in_l1(key), EVICTION_BOUND_S)
        assert await cache_b.get(key) == CacheResult({"v": 2}, "l2")
        assert await cache_a.get(key) == CacheResult({"v": 2}, "l1")  # own message ignored

        await cache_a.delete(key)
        took = max(took, await wait_for(lambda: not cache_b.in_l1(key), EVICTION_BOUND_S))
        assert await cache_b.get(key) is None
        assert took < EVICTION_BOUND_S


@pytest.mark.parametrize(
    ("kind", "cut", "expected"),
    [
        (HybridCache, "down", {"v": 2}),
        (HybridCache, "blackhole", {"v": 2}),
        (NoFlushOnReconnect, "down", {"v": 1}),
    ],
    ids=["flush-down", "flush-blackhole", "broken-variant-serves-stale"],
)
async def test_write_missed_while_cut_off_is_not_served_after_reconnect(
    cache_a: HybridCache,
    side_proxy: Proxy,
    kind: type[HybridCache],
    cut: str,
    expected: dict[str, int],
) -> None:
    """B misses A's invalidation while cut off; once reconnected it must not serve the old
    value. The broken variant (no flush on reconnect) does, which this test would catch."""
    async with make_cache(f"redis://{side_proxy.listen}/0", kind, name="b") as cache_b:
        assert await cache_b.wait_subscribed(RECONNECT_BOUND_S)
        key = f"k-{uuid.uuid4().hex[:6]}"
        await cache_a.set(key, {"v": 1})
        await read_into_l1(cache_b, key, {"v": 1})

        if cut == "down":
            await asyncio.to_thread(side_proxy.disable)
        else:
            for stream in ("upstream", "downstream"):
                await asyncio.to_thread(
                    side_proxy.add_toxic, "timeout", {"timeout": 0}, stream=stream
                )
        try:
            assert await cache_a.set(key, {"v": 2}) is True  # B cannot hear this
            await wait_for(lambda: not cache_b.subscribed, RECONNECT_BOUND_S)
            during = await cache_b.get(key)  # L2 unreachable: B's L1 is all it has
            assert during == CacheResult({"v": 1}, "l1")
        finally:
            await asyncio.to_thread(side_proxy.enable)
            for toxic in await asyncio.to_thread(side_proxy.toxics):
                await asyncio.to_thread(side_proxy.remove_toxic, toxic.name)

        await wait_for(
            lambda: cache_b.subscribed and cache_b.breaker.state is CircuitState.CLOSED,
            RECONNECT_BOUND_S,
        )
        after = await cache_b.get(key)
        assert after is not None and after.value == expected


class NoResync(HybridCache):
    """The broken variant: forgets writes that missed L2 during an outage."""

    def _start_resync(self) -> None:
        return None


@pytest.mark.parametrize(
    ("kind", "stale"),
    [(HybridCache, False), (NoResync, True)],
    ids=["resync", "broken-variant-no-resync"],
)
async def test_write_made_while_cut_off_does_not_leave_others_stale(
    cache_a: HybridCache, side_proxy: Proxy, kind: type[HybridCache], stale: bool
) -> None:
    """B writes while cut off (L1 only; Redis and A keep the old value). Once B is back, A
    must not keep serving the old value: B deletes the key in L2 and invalidates it."""
    async with make_cache(f"redis://{side_proxy.listen}/0", kind, name="b") as cache_b:
        assert await cache_b.wait_subscribed(RECONNECT_BOUND_S)
        key = f"k-{uuid.uuid4().hex[:6]}"
        await cache_a.set(key, {"v": 1})
        await read_into_l1(cache_a, key, {"v": 1})
        await asyncio.to_thread(side_proxy.disable)
        try:
            assert await cache_b.set(key, {"v": 2}) is False  # acknowledged, L1 only
        finally:
            await asyncio.to_thread(side_proxy.enable)
        await wait_for(
            lambda: cache_b.subscribed and cache_b.breaker.state is CircuitState.CLOSED,
            RECONNECT_BOUND_S,
        )
        await asyncio.sleep(0.3)  # the resync and its invalidation
        found = await cache_a.get(key)
        old_served = found is not None and found.value == {"v": 1}
        assert old_served is stale


async def test_warm_up_is_not_undone_by_the_first_subscription(stormproof_stack: Stack) -> None:
    """Warm-up started together with the cache waits for the subscription (whose first
    flush would drop what it loaded): afterwards the keys are L1 hits."""

    async def loader() -> JSON:
        return {"warm": True}

    cache = make_cache(stormproof_stack.urls.redis_url, name="warm")
    await cache.start()
    try:
        keys = [f"warm-{uuid.uuid4().hex[:6]}" for _ in range(3)]
        report = await asyncio.wait_for(warm_up(cache, dict.fromkeys(keys, loader)), 5.0)
        assert report.loaded == tuple(keys)
        assert cache.subscriptions == 1
        for key in keys:
            assert await cache.get(key) == CacheResult({"warm": True}, "l1")
    finally:
        await cache.aclose()
