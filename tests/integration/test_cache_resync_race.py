"""The post-outage race: a read between the breaker closing and the resync.

A value written (or deleted) while Redis is out stays in L1 only; L2 keeps the
pre-outage value until the resync deletes it. A read of such a key after the heal must
not get that pre-outage value from L2 (nor keep it in L1). The resync is held back by a
gate here, so the read always lands in the window (no timing luck needed); both caches go
through their own Toxiproxy proxy to the stack's Redis, cut and healed together.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any

import pytest

from reference.breaker import CircuitState
from reference.cache import JSON, CacheResult, HybridCache
from reference.cache._l2 import _L2
from scenarios.ports import free_port
from scenarios.stack import Stack
from scenarios.toxiproxy import Proxy, ProxySpec, ToxiproxyError
from tests.cache_support import FAST_SUBSCRIBER, cache_settings, make_cache, redis_breaker

pytestmark = pytest.mark.integration

RECONNECT_BOUND_S = 5.0
V1: JSON = {"v": 1}
V2: JSON = {"v": 2}


class GatedResync(HybridCache):
    """The reference with its post-outage resync held until `release` is set (a test
    seam: the race window stays open as long as the test wants)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.release = asyncio.Event()

    async def _resync(self) -> None:
        await self.release.wait()
        await super()._resync()


@pytest.fixture
def proxies(stormproof_stack: Stack) -> Iterator[Callable[[], Proxy]]:
    """Make extra proxies to the stack's Redis (all deleted at teardown)."""
    if stormproof_stack.provider == "docker":
        pytest.skip("extra proxies need a port reachable from the host (local stack only)")
    made: list[Proxy] = []

    def make() -> Proxy:
        upstream = stormproof_stack.redis_proxy.upstream
        name = f"redis_race_{uuid.uuid4().hex[:8]}"
        proxy = stormproof_stack.toxiproxy.create_proxy(
            ProxySpec(name, f"127.0.0.1:{free_port()}", upstream)
        )
        made.append(proxy)
        return proxy

    try:
        yield make
    finally:
        for proxy in made:
            try:
                proxy.delete()
            except ToxiproxyError:
                pass


async def wait_for(condition: Callable[[], bool], bound_s: float) -> None:
    """Poll `condition()` until true (fails after `bound_s`)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < bound_s, f"condition not met within {bound_s} s"
        await asyncio.sleep(0.005)


def healed(cache: HybridCache) -> bool:
    return cache.subscribed and cache.breaker.state is CircuitState.CLOSED


async def open_cache(
    stack: AsyncExitStack, proxy: Proxy, name: str, kind: type[GatedResync]
) -> GatedResync:
    settings = cache_settings(redis_url=f"redis://{proxy.listen}/0", instance_id=name)
    cache = make_cache(settings, redis_breaker(settings), kind, timing=FAST_SUBSCRIBER)
    assert isinstance(cache, GatedResync)
    stack.push_async_callback(cache.aclose)
    stack.callback(cache.release.set)  # the gated resync must not hold up aclose
    await cache.start()
    assert await cache.wait_subscribed(RECONNECT_BOUND_S)
    return cache


class ReadsPendingFromL2(GatedResync):
    """The broken variant (the reference before the fix): a key awaiting resync is read
    from L2 like any other, so the pre-outage value is served and fills L1."""

    def _pending(self, key: str) -> bool:
        return False

    async def _l2_lookup(self, key: str) -> JSON | _L2:
        return await self._l2_get(key)


Pair = tuple[GatedResync, GatedResync, list[Proxy]]


@pytest.fixture
async def pair(proxies: Callable[[], Proxy], request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    """Writer (of the kind the test asks for) and other instance, each through its own
    proxy (returned too)."""
    kind = getattr(request, "param", GatedResync)
    async with AsyncExitStack() as stack:
        cut = [proxies(), proxies()]
        writer = await open_cache(stack, cut[0], "writer", kind)
        other = await open_cache(stack, cut[1], "other", GatedResync)
        yield writer, other, cut


def value_of(found: CacheResult | None) -> object:
    return None if found is None else found.value


@pytest.mark.parametrize(
    ("pair", "broken"),
    [(GatedResync, False), (ReadsPendingFromL2, True)],
    ids=["reference", "broken-variant-reads-pending-from-l2"],
    indirect=["pair"],
)
@pytest.mark.parametrize("change", ["set", "delete"])
async def test_read_after_heal_never_returns_the_pre_outage_l2_value(
    pair: Pair, broken: bool, change: str
) -> None:
    """v1 reaches L2; Redis is cut; the writer sets v2 (or deletes) in L1 only; Redis
    heals. With the resync held back, reads on the writer once its breaker is CLOSED
    must never return v1 (the deleted key must not come back), neither from L2 nor later
    from L1; once the resync ran, the other instance must not return v1 either. The
    broken variant (L2 read for a key awaiting resync) serves v1, which this catches."""
    writer, other, cut = pair
    key = f"race-{uuid.uuid4().hex[:6]}"
    assert await writer.set(key, V1) is True  # v1 in L2
    assert value_of(await other.get(key)) == V1

    for proxy in cut:
        await asyncio.to_thread(proxy.disable)
    try:
        await wait_for(lambda: not writer.subscribed, RECONNECT_BOUND_S)
        if change == "set":
            assert await writer.set(key, V2) is False  # acknowledged, L1 only
            expected_during: object = V2
        else:
            assert await writer.delete(key) is False
            expected_during = None
        assert writer.breaker.state is CircuitState.OPEN or not writer.subscribed
        assert value_of(await writer.get(key)) == expected_during
    finally:
        for proxy in cut:
            await asyncio.to_thread(proxy.enable)

    await wait_for(lambda: healed(writer), RECONNECT_BOUND_S)
    # The resync is gated: L2 still holds v1. Read on the writer, twice (the second
    # read would be an L1 hit if the first had filled L1), and after a loop turn.
    seen = [await writer.get(key)]
    await asyncio.sleep(0)
    seen.append(await writer.get(key))
    seen.append(await writer.get_or_load(key, _no_loader))
    served_v1 = V1 in [value_of(found) for found in seen]
    assert served_v1 is broken, f"writer after the heal (L2 still holds v1): {seen}"
    if broken:
        return

    writer.release.set()
    other.release.set()
    await wait_for(lambda: healed(other), RECONNECT_BOUND_S)
    await wait_for(lambda: not writer._unsynced, RECONNECT_BOUND_S)
    await asyncio.sleep(0.3)  # the resync's invalidation reaches the other instance
    later = [value_of(await writer.get(key)), value_of(await other.get(key))]
    assert V1 not in later, f"the pre-outage value came back after the resync: {later}"


async def _no_loader() -> None:
    """A loader that has nothing (the key is not in any source of truth)."""
    return None
