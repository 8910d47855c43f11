"""HealthMonitor without services: the rule, timeouts, breaker independence, reports."""

from __future__ import annotations

import asyncio
import json

import pytest

from reference.breaker import BreakerConfig, CircuitBreaker, CircuitState
from reference.clock import FakeClock
from reference.health import (
    HealthMonitor,
    HealthStatus,
    ProbeResult,
    overall_status,
)

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
HEALTHY, DEGRADED, UNHEALTHY = HealthStatus.HEALTHY, HealthStatus.DEGRADED, HealthStatus.UNHEALTHY


class FakePing:
    """A ping that answers, fails or hangs, and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.error: Exception | None = None
        self.hang = False

    async def __call__(self) -> object:
        self.calls += 1
        if self.hang:
            await asyncio.sleep(10)
        if self.error is not None:
            raise self.error
        return True


def monitor(
    redis: FakePing | None, db: FakePing, breaker: CircuitBreaker, **kw: object
) -> HealthMonitor:
    return HealthMonitor(
        redis_ping=redis,
        db_ping=db,
        redis_breaker=breaker,
        redis_timeout_s=0.05,
        db_timeout_s=0.05,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("redis_ok", "database_ok", "states", "expected"),
    [
        (True, True, [CLOSED], HEALTHY),
        (True, True, [CLOSED, CLOSED], HEALTHY),
        (False, True, [CLOSED], DEGRADED),
        (True, True, [OPEN], DEGRADED),
        (True, True, [HALF_OPEN], DEGRADED),
        (True, True, [CLOSED, OPEN], DEGRADED),
        (False, False, [CLOSED], UNHEALTHY),
        (True, False, [CLOSED], UNHEALTHY),
        (True, False, [OPEN], UNHEALTHY),
    ],
)
def test_the_rule(
    redis_ok: bool, database_ok: bool, states: list[CircuitState], expected: HealthStatus
) -> None:
    """UNHEALTHY without the database; DEGRADED without Redis or with a breaker not CLOSED."""
    assert overall_status(redis_ok=redis_ok, database_ok=database_ok, breakers=states) is expected


async def test_healthy_report_is_json_with_the_contract_keys() -> None:
    """Both answer, breaker CLOSED: HEALTHY, with latencies and the circuit state."""
    clock = FakeClock()
    breaker = CircuitBreaker("redis", BreakerConfig(), clock)
    health = monitor(FakePing(), FakePing(), breaker, clock=clock)
    assert health.latest is None
    report = await health.check()
    assert report.status is HEALTHY
    body = json.loads(json.dumps(report.to_dict()))
    assert body["status"] == "HEALTHY" and body["circuit"] == "CLOSED"
    assert body["redis"] == {"ok": True, "latency_ms": 0.0, "error": None}
    assert body["database"]["ok"] is True
    assert health.latest is report


async def test_a_hanging_probe_times_out() -> None:
    """A ping that never answers is reported within its timeout, as not ok."""
    breaker = CircuitBreaker("redis", BreakerConfig())
    redis = FakePing()
    redis.hang = True
    health = monitor(redis, FakePing(), breaker)
    report = await asyncio.wait_for(health.check(), 1.0)
    assert report.status is DEGRADED
    assert report.redis == ProbeResult(False, None, "no answer within 0.05 s")


async def test_database_failure_is_unhealthy_and_errors_hide_passwords() -> None:
    """A failing database makes UNHEALTHY; the error text never shows a URL password."""
    breaker = CircuitBreaker("redis", BreakerConfig())
    db = FakePing()
    db.error = ConnectionError("cannot reach postgresql://app:s3cret@db:5432/x\nmore lines")
    report = await monitor(FakePing(), db, breaker).check()
    assert report.status is UNHEALTHY
    assert report.database.error == "ConnectionError: cannot reach postgresql://app:***@db:5432/x"
    assert "s3cret" not in json.dumps(report.to_dict())


async def test_ping_success_does_not_close_an_open_breaker() -> None:
    """Redis answers while its breaker is OPEN: DEGRADED, and the breaker stays OPEN."""
    clock = FakeClock()
    breaker = CircuitBreaker("redis", BreakerConfig(reset_timeout_s=30), clock)
    breaker.force_open()
    redis = FakePing()
    health = monitor(redis, FakePing(), breaker, clock=clock)
    for _ in range(5):
        report = await health.check()
        assert report.redis.ok and report.status is DEGRADED and report.circuit is OPEN
    assert redis.calls == 5
    assert breaker.state is OPEN


async def test_ping_failure_does_not_count_against_the_breaker() -> None:
    """Failing pings leave a CLOSED breaker CLOSED with no failures counted."""
    breaker = CircuitBreaker("redis", BreakerConfig(failure_threshold=1))
    redis = FakePing()
    redis.error = OSError("refused")
    health = monitor(redis, FakePing(), breaker)
    for _ in range(3):
        assert (await health.check()).status is DEGRADED
    assert breaker.state is CLOSED and breaker.snapshot().consecutive_failures == 0


async def test_disabled_redis_and_other_breakers_are_reported() -> None:
    """No Redis ping (DISABLE_REDIS) is DEGRADED; other breakers appear in `circuits`."""
    breaker = CircuitBreaker("redis", BreakerConfig())
    database_breaker = CircuitBreaker("database", BreakerConfig())
    database_breaker.force_open()
    health = monitor(None, FakePing(), breaker, other_breakers={"database": database_breaker})
    report = await health.check()
    assert report.status is DEGRADED
    assert report.redis.error == "disabled (DISABLE_REDIS)"
    assert report.to_dict()["circuits"] == {"redis": "CLOSED", "database": "OPEN"}


async def test_run_forever_polls_until_cancelled() -> None:
    """run_forever keeps `latest` current at the interval and stops on cancel."""
    breaker = CircuitBreaker("redis", BreakerConfig())
    db = FakePing()
    health = monitor(FakePing(), db, breaker)
    task = asyncio.create_task(health.run_forever(0.01))
    await asyncio.sleep(0.1)
    db.error = OSError("gone")
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert db.calls >= 5
    assert health.latest is not None and health.latest.status is UNHEALTHY
