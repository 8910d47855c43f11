"""Health: Redis PING and database `SELECT 1`, each with a timeout, plus breaker states.

The rule (see docs/health.md):
- UNHEALTHY when the database does not answer, whatever Redis does;
- DEGRADED when the database answers but Redis does not, or a breaker is not CLOSED;
- HEALTHY when both answer and every breaker is CLOSED.

The probes are independent of the breakers. A PING that succeeds while the Redis breaker is
OPEN does not close it (only the breaker's own trial calls do, after its reset timeout), and
a failed PING is not a breaker failure; the report gives both facts side by side. Give the
monitor its own small Redis client (e.g. `make_redis(url, timeout, max_connections=2)`)
so its probes neither wait for nor disturb the cache's pool.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from reference.breaker import CircuitBreaker, CircuitState
from reference.clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "HealthMonitor",
    "HealthReport",
    "HealthStatus",
    "Ping",
    "ProbeResult",
    "engine_ping",
    "overall_status",
    "redis_ping",
]

Ping = Callable[[], Awaitable[object]]
"""One round trip to a dependency; raises when it does not answer."""

_log = logging.getLogger(__name__)
_MAX_ERROR = 200
_URL_SECRET = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


class HealthStatus(StrEnum):
    """The overall verdict: HEALTHY, DEGRADED or UNHEALTHY (docs/health.md)."""

    HEALTHY = "HEALTHY"
    DEGRADED = "DEGRADED"
    UNHEALTHY = "UNHEALTHY"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One dependency's answer: ok, round-trip time, or why not."""

    ok: bool
    latency_ms: float | None
    error: str | None = None

    def to_dict(self) -> dict[str, bool | float | str | None]:
        """The probe as the `/health` JSON shows it."""
        latency = None if self.latency_ms is None else round(self.latency_ms, 3)
        return {"ok": self.ok, "latency_ms": latency, "error": self.error}


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The overall status, each probe, and each breaker's state at `checked_at`."""

    status: HealthStatus
    redis: ProbeResult
    database: ProbeResult
    circuit: CircuitState
    """The Redis breaker's state (the contract's `circuit`)."""
    circuits: tuple[tuple[str, CircuitState], ...]
    checked_at: float
    """Monotonic time of the check (the injected clock)."""

    def to_dict(self) -> dict[str, object]:
        """The contract's `GET /health` body (plus `circuits`)."""
        return {
            "status": self.status.value,
            "redis": self.redis.to_dict(),
            "database": self.database.to_dict(),
            "circuit": self.circuit.value,
            "circuits": {name: state.value for name, state in self.circuits},
        }


def overall_status(
    *, redis_ok: bool, database_ok: bool, breakers: Iterable[CircuitState]
) -> HealthStatus:
    """The health rule, as a pure function."""
    if not database_ok:
        return HealthStatus.UNHEALTHY
    if not redis_ok or any(state is not CircuitState.CLOSED for state in breakers):
        return HealthStatus.DEGRADED
    return HealthStatus.HEALTHY


def redis_ping(client: aioredis.Redis) -> Ping:
    """A `Ping` that sends PING on `client`."""

    async def ping() -> object:
        return await client.ping()

    return ping


def engine_ping(engine: AsyncEngine) -> Ping:
    """A `Ping` that runs `SELECT 1` on a connection from `engine`'s pool."""
    from sqlalchemy import text

    async def ping() -> object:
        async with engine.connect() as conn:
            return (await conn.execute(text("SELECT 1"))).scalar_one()

    return ping


class HealthMonitor:
    """Probes Redis and the database; `check()` on demand, `run_forever()` to poll.

    `redis_ping=None` means Redis is disabled (DISABLE_REDIS): reported as not ok, which
    with the breaker held open makes the service DEGRADED, as the rule says.
    """

    def __init__(
        self,
        *,
        redis_ping: Ping | None,
        db_ping: Ping,
        redis_breaker: CircuitBreaker,
        redis_timeout_s: float,
        db_timeout_s: float,
        other_breakers: Mapping[str, CircuitBreaker] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if redis_timeout_s <= 0 or db_timeout_s <= 0:
            raise ValueError("probe timeouts must be positive")
        self._redis_ping = redis_ping
        self._db_ping = db_ping
        self._redis_breaker = redis_breaker
        self._others = dict(other_breakers or {})
        self._redis_timeout_s = redis_timeout_s
        self._db_timeout_s = db_timeout_s
        self._clock = clock
        self._latest: HealthReport | None = None

    @property
    def latest(self) -> HealthReport | None:
        """The last report (None before the first check)."""
        return self._latest

    async def check(self) -> HealthReport:
        """Probe both dependencies concurrently and combine; never raises (but cancels)."""
        redis, database = await asyncio.gather(
            self._probe(self._redis_ping, self._redis_timeout_s),
            self._probe(self._db_ping, self._db_timeout_s),
        )
        circuit = self._redis_breaker.state
        others = [(name, breaker.state) for name, breaker in self._others.items()]
        circuits = ((self._redis_breaker.name, circuit), *others)
        report = HealthReport(
            status=overall_status(
                redis_ok=redis.ok,
                database_ok=database.ok,
                breakers=(state for _, state in circuits),
            ),
            redis=redis,
            database=database,
            circuit=circuit,
            circuits=circuits,
            checked_at=self._clock.monotonic(),
        )
        if self._latest is not None and self._latest.status is not report.status:
            _log.warning("health: %s -> %s", self._latest.status.value, report.status.value)
        self._latest = report
        return report

    async def run_forever(self, interval_s: float) -> None:
        """Check every `interval_s` seconds until cancelled."""
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        while True:
            try:
                await self.check()
            except Exception:  # a bug, not a dependency failure: keep polling
                _log.exception("health: check failed")
            await self._clock.sleep(interval_s)

    async def _probe(self, ping: Ping | None, timeout_s: float) -> ProbeResult:
        if ping is None:
            return ProbeResult(False, None, "disabled (DISABLE_REDIS)")
        started = self._clock.monotonic()
        try:
            async with asyncio.timeout(timeout_s):
                await ping()
        except TimeoutError:
            return ProbeResult(False, None, f"no answer within {timeout_s:g} s")
        except Exception as exc:
            return ProbeResult(False, None, _describe(exc))
        return ProbeResult(True, (self._clock.monotonic() - started) * 1000.0)


def _describe(exc: BaseException) -> str:
    """The exception's type and first line, short, with URL passwords masked."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = _URL_SECRET.sub(r"\1***@", text)
    described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return described[:_MAX_ERROR]
