"""L2: Redis behind the shared circuit breaker.

Every operation takes a permit from the shared breaker and is cut off at
`redis_op_timeout_s` (to within a tenth of it: `reference/deadlines.py`), whatever the
client does inside (a new connection makes several round trips). Without a permit
(OPEN) the cache makes no network attempt at all, the invalidation subscriber included.
When the breaker opens or the subscription drops, the pool's idle connections are
closed: they may be dead, and redis-py 8.1 would hand them out anyway.

What never reaches the caller: Redis errors, timeouts and breaker rejections (counted and
swallowed; the read falls back to L1, the stale copy or a miss; a write stays in L1).
L2 writes are best effort: a failed one leaves the previous L2 value in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import TimeoutError as RedisTimeoutError

from reference.breaker import CircuitBreaker, Permit
from reference.cache._common import JSON, CacheConfig, _decode
from reference.cache._l1 import _L1Store
from reference.deadlines import Deadlines
from reference.errors import describe
from reference.invalidation import SubscriberTiming, encode_message
from reference.metrics import ResilienceMetrics
from reference.sentinel import recheck_primary

T = TypeVar("T")
_log = logging.getLogger("reference.cache")


class _L2(Enum):
    MISS = "miss"
    DOWN = "down"


class NotReplicated(Exception):
    """WAIT saw fewer replicas than required take a cache write or delete in time."""

    def __init__(self, replicas: int, required: int) -> None:
        super().__init__(f"on {replicas} of {required} replica(s) in time")


class _L2Gateway(_L1Store):
    """Redis reads and writes under a breaker permit and the op deadline."""

    def __init__(
        self,
        config: CacheConfig,
        timer: Callable[[], float],
        metrics: ResilienceMetrics | None,
        instance_id: str,
        breaker: CircuitBreaker,
        redis: aioredis.Redis | None,
        timing: SubscriberTiming,
    ) -> None:
        super().__init__(config, timer, metrics, instance_id)
        self._breaker = breaker
        self._redis = redis
        self._timing = timing
        self._prefix = config.key_prefix
        self.channel = f"{self._prefix}invalidate"
        self._op_timeout_s = config.op_timeout_s
        self._min_replicas = config.min_replicas
        # WAIT gets half the op's budget: the write's own round trip fits in the rest
        self._wait_ms = max(1, round(config.op_timeout_s * 500))
        # Every L2 operation is cut off at the op timeout (within a tenth of it), without
        # the per-call timer of asyncio.timeout (see reference/deadlines.py).
        self._deadlines = Deadlines(self._op_timeout_s)

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, TimeoutError | RedisTimeoutError):
            self._l2_timeout()
        else:
            self._l2_error()
        self._redis_failure()
        _log.debug("cache: redis operation failed: %s", describe(exc))

    async def _l2_get(self, key: str) -> JSON | _L2:
        """GET under a permit; the value, MISS, or DOWN (rejected, error or timeout)."""
        redis = self._redis
        if redis is None:
            return _L2.DOWN
        permit = self._breaker.try_acquire()
        if permit is None:
            self._l2_rejected()
            return _L2.DOWN
        return await self._l2_fetch(redis, key, permit)

    async def _l2_fetch(self, redis: aioredis.Redis, key: str, permit: Permit) -> JSON | _L2:
        raw = await self._attempt(permit, redis.get(self._prefix + key))
        if isinstance(raw, _L2):
            return raw  # DOWN
        if raw is None:
            return _L2.MISS
        try:
            value: JSON = _decode(raw.decode() if isinstance(raw, bytes) else raw)
        except ValueError:
            _log.warning("cache: L2 value of %r is not JSON; treated as a miss", key)
            return _L2.MISS
        return value

    async def _attempt(self, permit: Permit, operation: Awaitable[T]) -> T | _L2:
        """Await `operation` under `permit` and the op deadline: its result, or DOWN.

        Settles the permit (success, failure, or release on an outside cancellation) and
        counts failures; only an outside cancellation propagates.
        """
        deadlines = self._deadlines
        task = deadlines.enter()
        try:
            result = await operation
        except asyncio.CancelledError:
            if not deadlines.leave(task):
                permit.release()
                raise
            permit.failure()
            self._failed(TimeoutError(f"no answer within {self._op_timeout_s:g} s"))
            return _L2.DOWN
        except Exception as exc:
            deadlines.leave(task)
            permit.failure()
            self._failed(exc)
            return _L2.DOWN
        except BaseException:
            deadlines.leave(task)
            permit.release()
            raise
        deadlines.leave(task)
        permit.success()
        return result

    async def _l2_write(
        self, key: str, payload: str, ttl: float, *, nx: bool, op: str | None
    ) -> bool:
        """SET (NX for fills) and, when `op` is given, PUBLISH the invalidation."""
        redis = self._redis
        if redis is None:
            return False
        millis = max(1, round(ttl * 1000))
        if op is None:
            return await self._guarded_l2(
                lambda: redis.set(self._prefix + key, payload, px=millis, nx=nx)
            )

        async def write() -> object:
            pipe = redis.pipeline(transaction=False)
            pipe.set(self._prefix + key, payload, px=millis, nx=nx)
            pipe.publish(self.channel, self._message(key, op))
            return await self._replicated(await self._waited(pipe).execute())

        return await self._guarded_l2(write)

    def _waited(self, pipe: Any) -> Any:
        """`pipe` followed by WAIT when writes must reach replicas (`min_replicas`)."""
        if self._min_replicas:
            pipe.execute_command("WAIT", self._min_replicas, self._wait_ms)
        return pipe

    async def _replicated(self, replies: list[Any]) -> list[Any]:
        """The replies, or NotReplicated when WAIT saw too few replicas (the write then
        counts as not reaching L2: the key awaits its resync, see _trust.py; the Sentinels
        are asked whether the primary changed, reference/sentinel.py)."""
        if self._min_replicas and int(replies[-1]) < self._min_replicas:
            if self._redis is not None:
                await recheck_primary(self._redis)
            raise NotReplicated(int(replies[-1]), self._min_replicas)
        return replies

    async def _l2_delete(self, key: str) -> bool:
        redis = self._redis
        if redis is None:
            return False

        async def remove() -> object:
            pipe = redis.pipeline(transaction=False)
            pipe.delete(self._prefix + key)
            pipe.publish(self.channel, self._message(key, "delete"))
            return await self._replicated(await self._waited(pipe).execute())

        return await self._guarded_l2(remove)

    async def _guarded_l2(self, fn: Callable[[], Awaitable[object]]) -> bool:
        """One best-effort L2 operation under a permit and the op deadline; True if done."""
        permit = self._breaker.try_acquire()
        if permit is None:
            self._l2_rejected()
            return False
        return await self._attempt(permit, fn()) is not _L2.DOWN

    def _message(self, key: str, op: str) -> str:
        return encode_message(key, self.instance_id, op)

    async def _drop_idle_connections(self) -> None:
        """Close the pool's idle connections (no new connection is made).

        Called when the breaker opens and when the subscription is lost: the idle
        connections may be dead, and redis-py 8.1's pool hands out a connection the server
        closed when maintenance notifications are "auto" (its RESP3 default), so each would
        fail one call (a trial call would re-open the breaker).
        """
        redis = self._redis
        if redis is None:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._timing.close_timeout_s):
                await redis.connection_pool.disconnect(inuse_connections=False)
