"""HybridCache against the real stack under each Redis fault.

For every fault: no call raises; while the breaker is CLOSED no call takes longer than
the op timeout plus a margin; the breaker opens after the threshold; once OPEN a call makes
no network attempt (counted by the client's own connections and, where the fault lets
traffic reach Redis, by Redis's INFO stats); values in L1 before the fault are served;
after healing the breaker closes within the reset timeout plus one trial round.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from reference.breaker import CircuitBreaker, CircuitState
from reference.cache import JSON, CacheResult, HybridCache
from reference.invalidation import SubscriberTiming
from reference.metrics import ResilienceMetrics
from reference.redis_client import make_redis
from scenarios.faults import FaultInjector, FaultSpec
from scenarios.stack import Stack
from tests.cache_support import (
    FAST_SUBSCRIBER,
    OP_TIMEOUT_S,
    NetworkCounter,
    cache_settings,
    counting_redis,
    make_cache,
    redis_breaker,
)

pytestmark = pytest.mark.integration

RESET_S = 0.5
MARGIN_S = 0.2
"""Allowed lateness over the op timeout (event-loop scheduling on a busy 2-core box)."""
OPEN_CALL_BOUND_S = 0.05
FAULTS: dict[str, FaultSpec] = {
    "down": FaultSpec("down", "redis"),
    "blackhole": FaultSpec("blackhole", "redis"),
    "latency": FaultSpec("latency", "redis", {"latency": 500}),
    "reset_peer": FaultSpec("reset_peer", "redis"),
    "sigkill": FaultSpec("sigkill", "redis"),
}
REACHES_REDIS = ("blackhole", "latency", "reset_peer")
"""Faults under which a new client connection still makes Toxiproxy dial Redis."""


@dataclass
class Rig:
    cache: HybridCache
    breaker: CircuitBreaker
    counter: NetworkCounter
    metrics: ResilienceMetrics
    direct: aioredis.Redis


@pytest.fixture
async def rig(stormproof_stack: Stack) -> AsyncIterator[Rig]:
    settings = cache_settings(
        redis_url=stormproof_stack.urls.redis_url, breaker_reset_timeout_s=RESET_S
    )
    breaker = redis_breaker(settings)
    counter = NetworkCounter()
    client = counting_redis(settings.redis_url, OP_TIMEOUT_S, counter)
    metrics = ResilienceMetrics()
    direct = aioredis.Redis.from_url(stormproof_stack.urls.redis_direct_url, socket_timeout=2)
    cache = make_cache(
        settings,
        breaker,
        metrics=metrics,
        redis=client,
        timing=SubscriberTiming(ping_interval_s=0.2),
    )
    await cache.start()
    try:
        assert await cache.wait_subscribed(5.0)
        yield Rig(cache, breaker, counter, metrics, direct)
    finally:
        await cache.aclose()
        await client.aclose()
        await direct.aclose()


def operations(cache: HybridCache) -> Callable[[], Awaitable[None]]:
    """An endless cycle of get/set/delete/get_or_load calls (each checked)."""
    counter = itertools.count()

    async def loader() -> JSON:
        return "loaded"

    async def step() -> None:
        i = next(counter)
        match i % 5:
            case 0:
                assert await cache.get("before") == CacheResult({"v": 1}, "l1")
            case 1:
                assert await cache.get(f"absent-{i}") is None
            case 2:
                await cache.set(f"written-{i}", i)
                assert await cache.get(f"written-{i}") == CacheResult(i, "l1")
            case 3:
                assert await cache.get_or_load(f"loaded-{i}", loader) == CacheResult(
                    "loaded", "loader"
                )
            case _:
                await cache.delete(f"written-{i - 3}")

    return step


async def server_stats(direct: aioredis.Redis) -> tuple[int, int]:
    info = await direct.info("stats")
    return int(info["total_connections_received"]), int(info["total_commands_processed"])


def l2_failures(metrics: ResilienceMetrics) -> float:
    total = 0.0
    for kind in ("error", "timeout"):
        value = metrics.registry.get_sample_value(
            "stormproof_cache_l2_errors_total", {"kind": kind}
        )
        total += value or 0.0
    return total


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_cache_rides_out_redis_fault(stormproof_stack: Stack, rig: Rig, fault: str) -> None:
    """The cache keeps answering through the fault and recovers after it (see module doc)."""
    cache, breaker = rig.cache, rig.breaker
    assert await cache.set("before", {"v": 1}) is True
    assert await cache.get("before") == CacheResult({"v": 1}, "l1")
    step = operations(cache)
    injector = FaultInjector.on_stack(stormproof_stack)
    await asyncio.to_thread(injector.apply, FAULTS[fault])
    try:
        # CLOSED: every call bounded by the op timeout (plus margin), none raises.
        slowest, calls = 0.0, 0
        while breaker.state is CircuitState.CLOSED:
            assert calls < 40, "the breaker never opened"
            started = time.monotonic()
            await step()
            slowest = max(slowest, time.monotonic() - started)
            calls += 1
        assert slowest <= OP_TIMEOUT_S + MARGIN_S, f"slowest call {slowest:.3f} s"
        assert breaker.state is CircuitState.OPEN
        assert 1 <= l2_failures(rig.metrics) <= breaker.config.failure_threshold

        # OPEN: no network attempt at all, every call immediate.
        await asyncio.sleep(0.05)  # let in-flight subscriber work settle
        if fault in REACHES_REDIS:
            server_before = await server_stats(rig.direct)
        client_before = rig.counter.total()
        for _ in range(50):
            started = time.monotonic()
            await step()
            assert time.monotonic() - started < OPEN_CALL_BOUND_S
        assert breaker.state is CircuitState.OPEN
        assert rig.counter.total() == client_before
        if fault in REACHES_REDIS:
            connections, commands = await server_stats(rig.direct)
            assert connections == server_before[0]
            assert commands == server_before[1] + 1  # the first INFO itself
    finally:
        errors = await asyncio.to_thread(injector.revert_all)
    assert errors == []
    healed = time.monotonic()

    # Healed: CLOSED again within the reset timeout plus one trial round.
    trial_round = breaker.config.half_open_max_calls * OP_TIMEOUT_S + MARGIN_S
    while breaker.snapshot().state is not CircuitState.CLOSED:
        assert time.monotonic() - healed <= RESET_S + trial_round, breaker.snapshot()
        await cache.get("before")
        await asyncio.sleep(0.01)
    assert await cache.set("after", "ok") is True
    assert await rig.direct.get("stormproof:after") == b'"ok"'
    assert await cache.wait_subscribed(2.0)


async def test_cold_connection_under_latency_is_cut_at_the_op_timeout(
    stormproof_stack: Stack,
) -> None:
    """Each round trip (150 ms) fits in the op timeout but a new connection's handshake
    plus the GET does not: the client alone takes longer, the cache stops at the timeout."""
    url = stormproof_stack.urls.redis_url
    settings = cache_settings(redis_url=url, breaker_failure_threshold=100)
    cache = make_cache(settings, redis_breaker(settings))  # no start(): no warm connection
    bare = make_redis(url, OP_TIMEOUT_S)
    try:
        with stormproof_stack.redis_proxy.toxic("latency", latency=150):
            started = time.monotonic()
            with contextlib.suppress(Exception):
                await bare.get("cold")
            bare_elapsed = time.monotonic() - started
            started = time.monotonic()
            assert await cache.get("cold") is None
            cache_elapsed = time.monotonic() - started
    finally:
        await cache.aclose()
        await bare.aclose()
    assert bare_elapsed > OP_TIMEOUT_S + 0.05  # the scenario is real
    assert cache_elapsed <= OP_TIMEOUT_S + MARGIN_S / 2


async def test_idle_cache_opens_and_closes_its_breaker_without_traffic(
    stormproof_stack: Stack,
) -> None:
    """With no calls at all, the subscriber's own attempts open the breaker when Redis goes
    away and close it again (trial calls) within the reset timeout plus a trial round. The
    test only listens to transitions: reading `breaker.state` would move OPEN to HALF_OPEN
    itself."""
    settings = cache_settings(
        redis_url=stormproof_stack.urls.redis_url, breaker_reset_timeout_s=RESET_S
    )
    breaker = redis_breaker(settings)
    states = [CircuitState.CLOSED]
    breaker.add_listener(lambda name, old, new: states.append(new))
    async with make_cache(settings, breaker, timing=FAST_SUBSCRIBER) as cache:
        assert await cache.wait_subscribed(5.0)
        proxy = stormproof_stack.redis_proxy
        await asyncio.to_thread(proxy.disable)
        try:
            started = time.monotonic()
            while not reached(states, CircuitState.OPEN):
                assert time.monotonic() - started < 3.0, "the breaker never opened"
                await asyncio.sleep(0.01)
        finally:
            await asyncio.to_thread(proxy.enable)
        healed = time.monotonic()
        trial_round = breaker.config.half_open_max_calls * OP_TIMEOUT_S + MARGIN_S
        while not reached(states, CircuitState.CLOSED):
            assert time.monotonic() - healed <= RESET_S + trial_round, states
            await asyncio.sleep(0.01)
        assert await cache.wait_subscribed(1.0)


def reached(states: list[CircuitState], state: CircuitState) -> bool:
    """Whether the last transition recorded went to `state`."""
    return states[-1] is state
