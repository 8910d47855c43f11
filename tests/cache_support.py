"""Helpers for the cache tests: small settings, a breaker, and a Redis client that counts
its own network attempts (a real connection subclass, not a mock)."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, replace
from typing import Any

import redis.asyncio as aioredis

from reference.breaker import BreakerConfig, CircuitBreaker
from reference.cache import HybridCache
from reference.clock import SYSTEM_CLOCK, Clock
from reference.config import Settings
from reference.invalidation import SubscriberTiming
from reference.redis_client import make_redis
from reference.service.configs import cache_config, redis_client

OP_TIMEOUT_S = 0.2
FAST_SUBSCRIBER = SubscriberTiming(ping_interval_s=0.2, backoff_max_s=0.2)
"""A subscriber that notices a lost or moved subscription within 0.2 s."""


def cache_settings(**overrides: Any) -> Settings:
    """Settings with test-sized timeouts (override any field)."""
    base = Settings(
        redis_op_timeout_s=OP_TIMEOUT_S,
        cache_ttl_s=60.0,
        cache_l1_ttl_s=30.0,
        cache_l1_max_items=100,
        cache_stale_window_s=20.0,
        breaker_failure_threshold=3,
        breaker_reset_timeout_s=0.5,
        breaker_half_open_max_calls=2,
        instance_id="test",
    )
    return replace(base, **overrides)


def make_cache(
    settings: Settings,
    breaker: CircuitBreaker,
    kind: type[HybridCache] = HybridCache,
    *,
    redis: aioredis.Redis | None = None,
    **options: Any,
) -> HybridCache:
    """A cache built as the service builds it: its config from `settings`, and a Redis
    client of its own (closed with the cache; behind Sentinel with `redis_sentinels`)
    unless `redis` is given or Redis is off."""
    owns = redis is None and not settings.disable_redis
    if owns:
        redis = redis_client(settings, settings.redis_op_timeout_s)
    return kind(cache_config(settings), breaker, redis=redis, owns_redis=owns, **options)


def redis_breaker(settings: Settings, clock: Clock = SYSTEM_CLOCK) -> CircuitBreaker:
    config = BreakerConfig(
        settings.breaker_failure_threshold,
        settings.breaker_reset_timeout_s,
        settings.breaker_half_open_max_calls,
    )
    return CircuitBreaker("redis", config, clock)


@dataclass
class NetworkCounter:
    """Socket connects and commands written by one client."""

    connects: int = 0
    commands: int = 0

    def total(self) -> int:
        return self.connects + self.commands


def counting_redis(url: str, timeout_s: float, counter: NetworkCounter) -> aioredis.Redis:
    """`make_redis(url, timeout_s)` whose connections count every connect and write."""
    client = make_redis(url, timeout_s)

    class CountingConnection(aioredis.Connection):
        async def _connect(self) -> None:
            counter.connects += 1
            await super()._connect()  # type: ignore[no-untyped-call]

        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            counter.commands += 1
            await super().send_packed_command(command, check_health)

    client.connection_pool.connection_class = CountingConnection
    return client


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def read_into_l1(cache: HybridCache, key: str, value: object) -> None:
    """`get` until the value sits in L1: the invalidation of the write that made it may
    arrive while the first read is in flight, and then that read does not fill L1."""
    started = time.monotonic()
    while True:
        found = await cache.get(key)
        assert found is not None and found.value == value
        if cache.in_l1(key):
            return
        assert time.monotonic() - started < 1.0, "the value never reached L1"
        await asyncio.sleep(0.01)
