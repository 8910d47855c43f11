"""The facade: `HybridCache`, L1 in process memory, L2 in Redis behind the breaker.

`get` goes L1 -> L2 (filling L1) -> miss. `set` writes L1, then L2 best effort, and
publishes an invalidation that evicts the key from the other instances' L1. Sources:
`"l1"`, `"l2"`, `"stale"`, and `"loader"` (a value `get_or_load` just loaded).

What reaches the caller besides values: `TypeError`/`ValueError` for a value that is not
JSON, and `ValueError` for a TTL that is not positive (caller bugs). The layers, each
in its own module: `_l1` (store, stale copies, fill stamp) <- `_l2` (Redis behind the
breaker) <- `_trust` (subscription, trust, resync) <- `_flight` (single-flight loads).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from types import TracebackType

import redis.asyncio as aioredis

from reference.breaker import CircuitBreaker
from reference.cache._common import JSON, CacheConfig, CacheResult, _dumps
from reference.cache._flight import _SingleFlight
from reference.cache._l2 import _L2
from reference.clock import SYSTEM_CLOCK, Clock, SystemClock
from reference.invalidation import SubscriberTiming
from reference.metrics import ResilienceMetrics


class HybridCache(_SingleFlight):
    """L1 (cachetools TTLCache) + L2 (Redis), with single-flight loads and invalidations.

    `breaker` is the shared Redis breaker (the audit queue uses it too); `redis` is the
    L2 client, required unless `config.disabled` (then none is allowed); the caller closes
    it unless `owns_redis`. Call `start()` to run the invalidation subscriber and
    `aclose()` to stop it.
    """

    def __init__(
        self,
        config: CacheConfig,
        breaker: CircuitBreaker,
        *,
        redis: aioredis.Redis | None = None,
        owns_redis: bool = False,
        metrics: ResilienceMetrics | None = None,
        clock: Clock = SYSTEM_CLOCK,
        instance_id: str | None = None,
        timing: SubscriberTiming | None = None,
    ) -> None:
        # SystemClock.monotonic is time.monotonic behind one more Python frame; the L1 hit
        # path reads the timer twice (cachetools), so take the builtin directly.
        timer = time.monotonic if isinstance(clock, SystemClock) else clock.monotonic
        if config.disabled:
            if redis is not None:
                raise ValueError("DISABLE_REDIS is set: the cache takes no Redis client")
            breaker.hold_open()
        elif redis is None:
            raise ValueError("the cache needs a Redis client unless Redis is disabled")
        self._flights = {}
        self._owns_redis = owns_redis
        super().__init__(
            config,
            timer,
            metrics,
            instance_id or f"{config.instance_id}-{secrets.token_hex(4)}",
            breaker,
            redis,
            timing or SubscriberTiming(),
            clock,
        )

    # -- reads --------------------------------------------------------------------------

    async def get(self, key: str) -> CacheResult | None:
        """The value from L1, else L2 (filling L1), else the stale copy if L2 is down."""
        with self._lock:
            hit = self._l1_get(key)
        if type(hit) is CacheResult:  # the hot path: a few dict operations
            if self._trusted:
                self._hit_l1()
                return hit
            return await self._read(key, hit)
        return await self._read(key, self._unexpired(hit))

    async def _read(self, key: str, entry: CacheResult | None) -> CacheResult | None:
        """The slow path of `get`: L2, then the L1 entry or the stale copy if L2 is down."""
        redis = self._redis
        if redis is None:
            return self._without_l2(key, entry)
        if self._unsynced and self._pending(key):
            return await self._read_pending(key, entry)
        permit = self._breaker.try_acquire()
        if permit is None:
            self._l2_rejected()
            return self._without_l2(key, entry)
        stamp = self._changes
        got = await self._l2_fetch(redis, key, permit)
        if not isinstance(got, _L2):
            self._fill_soon(key, got, stamp)
            self._hit_l2()
            return CacheResult(got, "l2")
        if got is _L2.DOWN:
            return self._without_l2(key, entry)
        if entry is not None:
            self._forget(key, stamp)
        self._miss()
        return None

    async def _read_pending(self, key: str, entry: CacheResult | None) -> CacheResult | None:
        """A key awaiting resync: its L2 value may predate this instance's change, so it
        is deleted in L2 first (then a miss); if L2 cannot, as if L2 were down."""
        stamp = self._changes
        if not await self._settle(key):
            return self._without_l2(key, entry)
        if entry is not None:
            self._forget(key, stamp)
        self._miss()
        return None

    def _without_l2(self, key: str, entry: CacheResult | None) -> CacheResult | None:
        """L2 could not answer: the L1 entry (even untrusted), the stale copy, or a miss."""
        if entry is not None:
            self._hit_l1()
            return entry
        stale = self._stale_copy(key)
        if stale is not None:
            self._stale_served()
            return stale
        self._miss()
        return None

    # -- writes -------------------------------------------------------------------------

    async def set(self, key: str, value: JSON, ttl_s: float | None = None) -> bool:
        """Write L1 now and L2 best effort (publishing an invalidation); True if L2 took it."""
        ttl = self._ttl(ttl_s)
        payload = _dumps(value)
        detached: JSON = json.loads(payload)
        with self._lock:
            self._touch(key)
            self._put(key, detached, ttl)
        return self._synced(key, await self._l2_write(key, payload, ttl, nx=False, op="set"))

    async def delete(self, key: str) -> bool:
        """Drop `key` from L1, the stale copies and L2 (publishing an invalidation).

        A read that starts after the L1 drop may reach Redis before the DEL (another
        connection) and fill L1 with the old value, which this instance's own invalidation
        does not evict: once L2 took the delete, L1 drops the key again (a drop only costs
        a miss while L2 answers)."""
        with self._lock:
            self._touch(key)
            self._drop(key)
        reached = await self._l2_delete(key)
        if reached:
            with self._lock:
                self._touch(key)
                self._drop(key)
        return self._synced(key, reached)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the invalidation subscriber (no-op with DISABLE_REDIS or when started)."""
        if self._subscriber is not None and not self._closed:
            self._subscriber.start()

    async def aclose(self) -> None:
        """Stop the subscriber, and close the Redis client if this cache owns it
        (idempotent). A closed cache still answers from L1 but no longer uses Redis.
        """
        if self._closed:
            return
        self._closed = True
        if self._subscriber is not None:
            await self._subscriber.aclose()
        if self._background:
            await asyncio.wait(tuple(self._background), timeout=self._timing.close_timeout_s)
        await self._deadlines.aclose()
        redis, self._redis = self._redis, None  # from now on: L1 only
        if self._owns_redis and redis is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._timing.close_timeout_s):
                    await redis.aclose()

    async def __aenter__(self) -> HybridCache:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def breaker(self) -> CircuitBreaker:
        """The shared Redis breaker."""
        return self._breaker

    @property
    def redis(self) -> aioredis.Redis | None:
        """The L2 client (None with DISABLE_REDIS, and after `aclose`)."""
        return self._redis

    @property
    def subscribed(self) -> bool:
        """Whether the invalidation subscription is up right now."""
        return self._subscribed

    @property
    def l1_trusted(self) -> bool:
        """Whether L1 hits are served without asking L2 (see `reference/cache/_trust.py`)."""
        return self._trusted

    async def wait_subscribed(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the subscription; tell whether it is up.

        Without Redis (DISABLE_REDIS, or closed) there is none to wait for: False at once.
        """
        if self._subscribed:
            return True
        if self._subscriber is None or self._closed:
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._subscribed_event.wait()
        return self._subscribed
