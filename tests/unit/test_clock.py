"""The injected clock: FakeClock's sleepers wake exactly when advanced past their due
time, and a background loop (the health poller) can be driven by it."""

from __future__ import annotations

import asyncio

import pytest

from reference.breaker import BreakerConfig, CircuitBreaker
from reference.clock import SYSTEM_CLOCK, FakeClock
from reference.health import HealthMonitor


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_sleepers_wake_when_due_and_not_before() -> None:
    """advance() wakes the sleeps now due, in due order, and leaves the others waiting."""
    clock = FakeClock()
    woke: list[str] = []

    async def nap(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    tasks = [asyncio.create_task(nap(n, s)) for n, s in (("late", 2.0), ("early", 1.0))]
    await _settle()
    assert clock.sleepers == 2
    clock.advance(0.999)
    await _settle()
    assert woke == []
    clock.advance(0.001)
    await _settle()
    assert woke == ["early"]
    clock.advance(5.0)
    await _settle()
    assert woke == ["early", "late"]
    await asyncio.gather(*tasks)


async def test_zero_sleep_only_yields_and_wall_time_moves_with_monotonic() -> None:
    """sleep(0) returns without an advance; now() moves with monotonic(); never back."""
    clock = FakeClock(start=10.0, wall=1_700_000_000.0)
    await asyncio.wait_for(clock.sleep(0), 1.0)
    clock.advance(2.5)
    assert (clock.monotonic(), clock.now()) == (12.5, 1_700_000_002.5)
    with pytest.raises(ValueError):
        clock.advance(-1)


async def test_system_clock_sleeps_for_real() -> None:
    """SystemClock.sleep is a real (short) sleep; now() is epoch seconds."""
    started = SYSTEM_CLOCK.monotonic()
    await SYSTEM_CLOCK.sleep(0.01)
    assert SYSTEM_CLOCK.monotonic() - started >= 0.009
    assert SYSTEM_CLOCK.now() > 1_600_000_000


async def test_health_poller_is_driven_by_the_clock() -> None:
    """The poller checks once, then once more per interval the clock is advanced."""
    clock = FakeClock()
    calls = 0

    async def ping() -> object:
        nonlocal calls
        calls += 1
        return True

    breaker = CircuitBreaker("redis", BreakerConfig(), clock)
    health = HealthMonitor(
        redis_ping=ping,
        db_ping=ping,
        redis_breaker=breaker,
        redis_timeout_s=1.0,
        db_timeout_s=1.0,
        clock=clock,
    )
    task = asyncio.create_task(health.run_forever(5.0))
    try:
        await _settle()
        assert calls == 2  # one check: both probes
        clock.advance(4.9)
        await _settle()
        assert calls == 2
        clock.advance(0.1)
        await _settle()
        assert calls == 4
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
