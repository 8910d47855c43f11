"""HealthMonitor against the real stack: HEALTHY, DEGRADED with Redis cut off, UNHEALTHY
with PostgreSQL cut off, and HEALTHY again after healing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from reference.breaker import BreakerConfig, CircuitBreaker, CircuitState
from reference.config import Settings
from reference.health import HealthMonitor, HealthReport, HealthStatus, engine_ping, redis_ping
from reference.redis_client import make_redis
from scenarios.stack import Stack

pytestmark = pytest.mark.integration

TIMEOUT_S = 0.3
SETTLE_BOUND_S = 5.0


@pytest.fixture
async def health(stormproof_stack: Stack) -> AsyncIterator[HealthMonitor]:
    client = make_redis(stormproof_stack.urls.redis_url, TIMEOUT_S, max_connections=2)
    database_url = Settings(database_url=stormproof_stack.urls.database_url).sqlalchemy_url
    engine = create_async_engine(
        database_url, pool_size=1, pool_pre_ping=True, connect_args={"connect_timeout": 2}
    )
    monitor = HealthMonitor(
        redis_ping=redis_ping(client),
        db_ping=engine_ping(engine),
        redis_breaker=CircuitBreaker("redis", BreakerConfig()),
        redis_timeout_s=TIMEOUT_S,
        db_timeout_s=TIMEOUT_S * 3,
    )
    try:
        yield monitor
    finally:
        await client.aclose()
        await engine.dispose()


async def settles(monitor: HealthMonitor, expected: HealthStatus) -> HealthReport:
    """Check until the status is `expected` (bounded); the matching report."""
    started = time.monotonic()
    while True:
        report = await monitor.check()
        if report.status is expected:
            return report
        assert time.monotonic() - started < SETTLE_BOUND_S, report.to_dict()
        await asyncio.sleep(0.05)


async def test_health_follows_the_faults(stormproof_stack: Stack, health: HealthMonitor) -> None:
    """HEALTHY -> DEGRADED (redis down) -> UNHEALTHY (postgres down) -> HEALTHY (healed)."""
    report = await health.check()
    assert report.status is HealthStatus.HEALTHY, report.to_dict()
    assert report.redis.ok and report.database.ok and report.circuit is CircuitState.CLOSED

    redis_proxy = stormproof_stack.redis_proxy
    await asyncio.to_thread(redis_proxy.disable)
    try:
        report = await settles(health, HealthStatus.DEGRADED)
        assert not report.redis.ok and report.redis.error and report.database.ok
    finally:
        await asyncio.to_thread(redis_proxy.enable)
    await settles(health, HealthStatus.HEALTHY)

    postgres_proxy = stormproof_stack.postgres_proxy
    await asyncio.to_thread(postgres_proxy.disable)
    try:
        report = await settles(health, HealthStatus.UNHEALTHY)
        assert not report.database.ok and report.redis.ok
        started = time.monotonic()
        await health.check()
        assert time.monotonic() - started < TIMEOUT_S * 3 + 0.5  # bounded by the timeout
    finally:
        await asyncio.to_thread(postgres_proxy.enable)

    report = await settles(health, HealthStatus.HEALTHY)
    assert report.to_dict()["status"] == "HEALTHY"


async def test_redis_black_hole_is_degraded_within_the_timeout(
    stormproof_stack: Stack, health: HealthMonitor
) -> None:
    """A black-holed Redis answers nothing: DEGRADED, reported within the probe timeout."""
    assert (await health.check()).status is HealthStatus.HEALTHY
    with stormproof_stack.redis_proxy.toxic("timeout", timeout=0):
        started = time.monotonic()
        report = await health.check()
        elapsed = time.monotonic() - started
    assert report.status is HealthStatus.DEGRADED
    assert report.redis.error == f"no answer within {TIMEOUT_S:g} s"
    assert elapsed < TIMEOUT_S + 0.3
    await settles(health, HealthStatus.HEALTHY)
