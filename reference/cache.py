"""The hybrid cache: L1 in process memory, L2 in Redis behind the circuit breaker.

`get` goes L1 -> L2 (filling L1) -> miss. `set` writes L1, then L2 best effort, and
publishes an invalidation that evicts the key from the other instances' L1. `get_or_load`
is single-flight per key and fail-safe: when L2 and the loader both fail, a copy kept
past its L1 freshness is served, marked `"stale"`, for up to `cache_stale_window_s`.
Sources: `"l1"`, `"l2"`, `"stale"`, and `"loader"` (a value `get_or_load` just loaded).

What never reaches the caller: Redis errors, timeouts and breaker rejections (counted and
swallowed; the read falls back to L1, the stale copy or a miss; a write stays in L1).
What does: a loader's exception when no stale copy can stand in (the data source failed,
not Redis), `TypeError`/`ValueError` for a value that is not JSON, and `ValueError` for a
TTL that is not positive (caller bugs).

Redis: every operation takes a permit from the shared breaker and is cut off at
`redis_op_timeout_s` (to within a tenth of it: `reference/deadlines.py`), whatever the
client does inside (a new connection makes several round trips). Without a permit
(OPEN) the cache makes no network attempt at all, the invalidation subscriber included.
When the breaker opens or the subscription drops, the pool's idle connections are
closed: they may be dead, and redis-py 8.1 would hand them out anyway.

Coherence: L1 entries are *trusted* (served without asking L2) only while this instance
is subscribed to the invalidation channel and its L2 is not in an outage (breaker opened
and not yet closed again). An untrusted L1 entry is served only when L2 cannot answer
(that is what L1 is for during an outage), marked `"l1"`. A (re)subscription and a
breaker recovery both call `flush_on_reconnect`, which drops L1 and the stale copies:
invalidations sent while this instance was cut off were lost, so any of them may be
superseded. An invalidation for a key drops both of its copies. A read whose key was
written or invalidated while it was in flight does not fill L1. An L2 hit fills L1 on
the next loop turn, after the caller has its value, for `cache_l1_ttl_s` whatever the
L2 key's remaining TTL (a `ttl_s` shorter than L1's bounds the entries this instance
writes); L2 writes are best effort: a failed one leaves the previous L2 value in place.

`DISABLE_REDIS=true`: L1 only, breaker held open, no Redis client.
Values returned are shared with the cache: treat them as read-only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from enum import Enum
from functools import partial
from types import TracebackType
from typing import Any, Literal, TypeAlias, TypeVar

import redis.asyncio as aioredis
from cachetools import TTLCache
from redis.exceptions import TimeoutError as RedisTimeoutError

from reference.breaker import CircuitBreaker, CircuitState, Permit
from reference.clock import SYSTEM_CLOCK, Clock, SystemClock
from reference.config import Settings
from reference.deadlines import Deadlines
from reference.invalidation import (
    Subscriber,
    SubscriberTiming,
    decode_message,
    encode_message,
)
from reference.metrics import ResilienceMetrics
from reference.redis_client import make_redis

__all__ = ["JSON", "CacheResult", "CacheSource", "HybridCache", "Loader", "SubscriberTiming"]

JSON: TypeAlias = "bool | int | float | str | list[JSON] | dict[str, JSON] | None"
CacheSource = Literal["l1", "l2", "stale", "loader"]
Loader = Callable[[], Awaitable[JSON]]
"""Loads a value from the source of truth; None means "no such value" (not cached)."""

T = TypeVar("T")
_log = logging.getLogger(__name__)
_OPEN = CircuitState.OPEN
_HALF_OPEN = CircuitState.HALF_OPEN
_CLOSED = CircuitState.CLOSED


@dataclass(frozen=True, slots=True)
class CacheResult:
    """A value and where it came from: `"loader"` only from `get_or_load`."""

    value: JSON
    source: CacheSource


class _L2(Enum):
    MISS = "miss"
    DOWN = "down"


class _Expiring:
    """An L1 entry whose own TTL is shorter than L1's (other entries are bare results)."""

    __slots__ = ("expires", "result")

    def __init__(self, result: CacheResult, expires: float) -> None:
        self.result = result
        self.expires = expires


_L1Entry: TypeAlias = "CacheResult | _Expiring"


_StaleCopy: TypeAlias = "tuple[JSON, float, float]"
"""The fail-safe copy of a value: (value, written_at, until); servable, marked stale,
until `until` (a plain tuple: it is written on every fill)."""


_RECENT_CHANGES = 4096
"""How many recently changed keys are remembered for the fill guard (see `_unchanged`)."""


class _LeaderCancelled(Exception):
    """The single-flight leader was cancelled: followers elect a new one."""


def _noop() -> None:
    return None


class _MetricHooks:
    """One zero-argument callable per cache metric (no-ops without metrics)."""

    def __init__(self, m: ResilienceMetrics | None) -> None:
        self.hit_l1: Callable[[], None] = _noop
        self.hit_l2: Callable[[], None] = _noop
        self.miss: Callable[[], None] = _noop
        self.stale_served: Callable[[], None] = _noop
        self.loader_fallback: Callable[[], None] = _noop
        self.l2_rejected: Callable[[], None] = _noop
        self.l2_timeout: Callable[[], None] = _noop
        self.l2_error: Callable[[], None] = _noop
        self.redis_failure: Callable[[], None] = _noop
        if m is None:
            return
        self.hit_l1 = partial(m.record_cache_hit, "l1")
        self.hit_l2 = partial(m.record_cache_hit, "l2")
        self.miss = m.record_cache_miss
        self.stale_served = m.record_stale_served
        self.loader_fallback = m.record_loader_fallback
        self.l2_rejected = partial(m.record_l2_error, "rejected")
        self.l2_timeout = partial(m.record_l2_error, "timeout")
        self.l2_error = partial(m.record_l2_error, "error")
        self.redis_failure = m.record_redis_failure


_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _decode(text: str) -> JSON:
    """`json.loads`, with a fast path for what `_dumps` writes (no surrounding spaces)."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        end = -1
    result: JSON = value if end == len(text) else json.loads(text)  # loads raises for junk
    return result


def _dumps(value: JSON) -> str:
    """Compact JSON that Redis can store: NaN and lone surrogates are the caller's error
    (ValueError), never a Redis failure counted against the breaker."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    text.encode("utf-8")  # UnicodeEncodeError (a ValueError) for lone surrogates
    return text


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class HybridCache:
    """L1 (cachetools TTLCache) + L2 (Redis), with single-flight loads and invalidations.

    `breaker` is the shared Redis breaker (the audit queue uses it too); `redis` is an
    optional client to use instead of one made from `settings` (the caller then closes
    it). Call `start()` to run the invalidation subscriber and `aclose()` to stop it.
    """

    def __init__(
        self,
        settings: Settings,
        breaker: CircuitBreaker,
        *,
        metrics: ResilienceMetrics | None = None,
        clock: Clock = SYSTEM_CLOCK,
        redis: aioredis.Redis | None = None,
        instance_id: str | None = None,
        timing: SubscriberTiming | None = None,
    ) -> None:
        self._breaker = breaker
        # SystemClock.monotonic is time.monotonic behind one more Python frame; the L1 hit
        # path reads the timer twice (cachetools), so take the builtin directly.
        timer = time.monotonic if isinstance(clock, SystemClock) else clock.monotonic
        self._now = timer
        self._timing = timing or SubscriberTiming()
        self.instance_id = instance_id or f"{settings.instance_id}-{secrets.token_hex(4)}"
        self._prefix = settings.cache_l2_key_prefix
        self.channel = f"{self._prefix}invalidate"
        self._default_ttl_s = settings.cache_ttl_s
        self._l1_ttl_s = settings.cache_l1_ttl_s
        self._stale_window_s = settings.cache_stale_window_s
        self._op_timeout_s = settings.redis_op_timeout_s
        # Every L2 operation is cut off at the op timeout (within a tenth of it), without
        # the per-call timer of asyncio.timeout (see reference/deadlines.py).
        self._deadlines = Deadlines(self._op_timeout_s)

        self._lock = threading.Lock()
        size = settings.cache_l1_max_items
        self._l1: TTLCache[str, _L1Entry] = TTLCache(size, self._l1_ttl_s, timer=timer)
        self._l1_get = self._l1.get
        # Stale copies: bounded to `size`, the oldest write evicted first (OrderedDict:
        # O(1) at both ends); each copy carries its own deadline, checked when read.
        self._stale: OrderedDict[str, _StaleCopy] | None = None
        if self._stale_window_s > 0:
            self._stale = OrderedDict()
        self._stale_max = size
        # A read fills L1 only if its key saw no write or invalidation, and L1 no flush,
        # while it was in flight (otherwise it may carry a superseded value). Changes are
        # numbered; a read remembers the number it started at (see `_unchanged`).
        self._changes = 0
        self._recent: OrderedDict[str, int] = OrderedDict()
        self._forgotten_upto = 0
        self._flushed_at = 0
        self._flights: dict[str, asyncio.Future[CacheResult | None]] = {}

        self._disabled = settings.disable_redis
        self._owns_redis = False
        self._redis: aioredis.Redis | None
        if self._disabled:
            if redis is not None:
                raise ValueError("DISABLE_REDIS is set: the cache takes no Redis client")
            self._redis = None
            breaker.hold_open()
        elif redis is None:
            password = settings.redis_password.reveal() if settings.redis_password else None
            self._redis = make_redis(
                settings.redis_url, settings.redis_op_timeout_s, password=password
            )
            self._owns_redis = True
        else:
            self._redis = redis

        self._subscribed = False
        self._l2_outage = breaker.state is not _CLOSED
        self._trusted = self._disabled
        self._subscribed_event = asyncio.Event()
        self.subscriptions = 0
        """How many times the invalidation subscription was (re)established."""
        self._subscriber: Subscriber | None = None
        if self._redis is not None:
            self._subscriber = Subscriber(
                self._redis,
                breaker,
                self.channel,
                op_timeout_s=self._op_timeout_s,
                timing=self._timing,
                clock=clock,
                on_message=self._apply_invalidation,
                on_subscribed=self._on_subscribed,
                on_lost=self._on_unsubscribed,
                on_failure=self._count_failure,
            )
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False
        # Keys whose last local write or delete did not reach L2 (or whose invalidation was
        # not published): Redis may hold an older value the other instances will serve.
        # When L2 answers again they are deleted there and invalidated everywhere.
        self._unsynced: OrderedDict[str, None] = OrderedDict()
        self._unsynced_max = settings.cache_l1_max_items
        self._resyncing = False

        # Metric hooks bound once: the hot path makes one call, no label lookups.
        hooks = _MetricHooks(metrics)
        self._hit_l1 = hooks.hit_l1
        self._hit_l2 = hooks.hit_l2
        self._miss = hooks.miss
        self._stale_served = hooks.stale_served
        self._loader_fallback = hooks.loader_fallback
        self._l2_rejected = hooks.l2_rejected
        self._l2_timeout = hooks.l2_timeout
        self._l2_error = hooks.l2_error
        self._redis_failure = hooks.redis_failure

        ref = weakref.ref(self)

        def on_transition(name: str, old: CircuitState, new: CircuitState) -> None:
            cache = ref()
            if cache is not None:
                cache._on_breaker(old, new)

        breaker.add_listener(on_transition)

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

    async def get_or_load(
        self, key: str, loader: Loader, ttl_s: float | None = None
    ) -> CacheResult | None:
        """The cached value, or `loader()`'s (cached for `ttl_s`); one load per key at a time.

        Concurrent callers of a missing key share one loader call: followers await the
        leader's outcome (its value or its exception). A cancelled leader hands over to a
        follower, which loads again. When the loader raises and L2 was unreachable, a stale
        copy within the window is served instead; otherwise the exception propagates.
        """
        ttl = self._ttl(ttl_s)
        while True:
            entry = self._l1_lookup(key)
            if entry is not None and self._trusted:
                self._hit_l1()
                return entry
            flight = self._flights.get(key)
            if flight is None:
                break
            try:
                result = await asyncio.shield(flight)
            except _LeaderCancelled:
                continue
            except Exception:
                self._miss()
                raise
            self._record_follower(result)
            return result
        return await self._lead(key, entry, loader, ttl)

    def in_l1(self, key: str) -> bool:
        """Whether L1 holds a fresh entry for `key` (trusted or not)."""
        return self._l1_lookup(key) is not None

    def l1_size(self) -> int:
        with self._lock:
            return len(self._l1)

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
        """Drop `key` from L1, the stale copies and L2 (publishing an invalidation)."""
        with self._lock:
            self._touch(key)
            self._drop(key)
        return self._synced(key, await self._l2_delete(key))

    def _synced(self, key: str, reached_l2: bool) -> bool:
        """Track writes that missed L2; after any success, resync the missed ones."""
        if self._redis is None:
            return reached_l2
        if not reached_l2:
            self._unsynced[key] = None
            self._unsynced.move_to_end(key)
            while len(self._unsynced) > self._unsynced_max:
                self._unsynced.popitem(last=False)  # bounded: the oldest is forgotten
        else:
            self._unsynced.pop(key, None)
            if self._unsynced:
                self._start_resync()
        return reached_l2

    def _start_resync(self) -> None:
        if not self._resyncing and self._unsynced and not self._closed:
            self._resyncing = True
            self._spawn(self._resync())

    async def _resync(self) -> None:
        """Delete in L2, and invalidate everywhere, every key written here during an outage.

        Deleting rather than re-writing never regresses a key that another instance wrote
        later; the cost is a miss (a reload from the source) instead of a stale value.
        """
        done = 0
        try:
            for key in list(self._unsynced):
                if key not in self._unsynced:
                    continue
                if not await self._l2_delete(key):
                    return  # L2 is down again: the next recovery resumes
                self._unsynced.pop(key, None)
                done += 1
        finally:
            if done:
                _log.info(
                    "cache %s: invalidated %d keys written during an outage", self.instance_id, done
                )
            self._resyncing = False

    def flush(self) -> None:
        """Drop every L1 entry and every stale copy."""
        with self._lock:
            self._changes += 1
            self._flushed_at = self._changes
            self._l1.clear()
            if self._stale is not None:
                self._stale.clear()

    def flush_on_reconnect(self, reason: str) -> None:
        """Called when the subscription (re)connects and when L2 recovers from an outage.

        Invalidations sent while this instance was cut off were lost, so L1 and the stale
        copies go. This is the seam the broken variant "no L1 flush on reconnect"
        overrides with a no-op.
        """
        self.flush()
        _log.info("cache %s: L1 flushed (%s)", self.instance_id, reason)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the invalidation subscriber (no-op with DISABLE_REDIS or when started)."""
        if self._subscriber is not None and not self._closed:
            self._subscriber.start()

    async def aclose(self) -> None:
        """Stop the subscriber and close the Redis client this cache made (idempotent).

        A closed cache still answers from L1 but no longer uses Redis.
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
        """Whether L1 hits are served without asking L2 (see the module docstring)."""
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

    # -- read internals -----------------------------------------------------------------

    def _unexpired(self, hit: _L1Entry | None) -> CacheResult | None:
        """The result of an L1 entry still within its own TTL."""
        if hit is None or type(hit) is CacheResult:
            return hit
        assert isinstance(hit, _Expiring)
        return hit.result if self._now() < hit.expires else None

    def _l1_lookup(self, key: str) -> CacheResult | None:
        """A fresh L1 result for `key`, trusted or not (no metrics)."""
        with self._lock:
            hit = self._l1_get(key)
        return self._unexpired(hit)

    async def _read(self, key: str, entry: CacheResult | None) -> CacheResult | None:
        """The slow path of `get`: L2, then the L1 entry or the stale copy if L2 is down."""
        redis = self._redis
        if redis is None:
            return self._without_l2(key, entry)
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

    async def _lead(
        self, key: str, entry: CacheResult | None, loader: Loader, ttl: float
    ) -> CacheResult | None:
        flight: asyncio.Future[CacheResult | None] = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        try:
            result = await self._load(key, entry, loader, ttl, self._changes)
        except asyncio.CancelledError:
            flight.set_exception(_LeaderCancelled())
            flight.exception()  # mark retrieved: followers may be none
            raise
        except Exception as exc:
            flight.set_exception(exc)
            flight.exception()
            raise
        except BaseException:
            flight.set_exception(_LeaderCancelled())
            flight.exception()
            raise
        else:
            flight.set_result(result)
            return result
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]

    async def _load(
        self, key: str, entry: CacheResult | None, loader: Loader, ttl: float, stamp: int
    ) -> CacheResult | None:
        got = await self._l2_get(key)
        if not isinstance(got, _L2):
            self._fill_soon(key, got, stamp)
            self._hit_l2()
            return CacheResult(got, "l2")
        l2_down = got is _L2.DOWN
        if l2_down and entry is not None:
            self._hit_l1()
            return entry
        try:
            loaded = await loader()
        except Exception as exc:
            stale = self._stale_copy(key) if l2_down else None
            if stale is None:
                self._miss()
                raise
            _log.debug("cache: loader for %r failed (%s), serving stale", key, _describe(exc))
            self._stale_served()
            return stale
        self._miss()
        if l2_down:
            self._loader_fallback()
        if loaded is None:
            return None
        payload = _dumps(loaded)
        value: JSON = json.loads(payload)
        if self._fill(key, value, ttl, stamp) and not l2_down:
            await self._l2_write(key, payload, ttl, nx=True, op=None)
        return CacheResult(value, "loader")

    def _record_follower(self, result: CacheResult | None) -> None:
        source = None if result is None else result.source
        if source == "l1":
            self._hit_l1()
        elif source == "l2":
            self._hit_l2()
        elif source == "stale":
            self._stale_served()
        else:
            self._miss()

    def _stale_copy(self, key: str) -> CacheResult | None:
        store = self._stale
        if store is None:
            return None
        with self._lock:
            copy = store.get(key)
        if copy is None or self._now() >= copy[2]:
            return None
        return CacheResult(copy[0], "stale")

    # -- L1 internals (call with the lock held unless said otherwise) -----------------------

    def _put(self, key: str, value: JSON, ttl: float) -> None:
        now = self._now()
        result = CacheResult(value, "l1")
        if ttl < self._l1_ttl_s:
            self._l1[key] = _Expiring(result, now + ttl)
            fresh_for = ttl
        else:
            self._l1[key] = result
            fresh_for = self._l1_ttl_s
        stale = self._stale
        if stale is not None:
            stale[key] = (value, now, now + fresh_for + self._stale_window_s)
            stale.move_to_end(key)
            if len(stale) > self._stale_max:
                stale.popitem(last=False)

    def _touch(self, key: str) -> None:
        """`key` was written or invalidated: reads of it in flight must not fill L1."""
        self._changes += 1
        recent = self._recent
        recent[key] = self._changes
        recent.move_to_end(key)
        if len(recent) > _RECENT_CHANGES:
            self._forgotten_upto = recent.popitem(last=False)[1]

    def _unchanged(self, key: str, stamp: int) -> bool:
        """No write, invalidation or flush touched `key` since change number `stamp`."""
        if self._changes == stamp:
            return True  # the common case: nothing changed at all
        if self._flushed_at > stamp or self._forgotten_upto > stamp:
            return False  # flushed, or too much changed to tell: be safe
        return self._recent.get(key, 0) <= stamp

    def _fill_soon(self, key: str, value: JSON, stamp: int) -> None:
        """Fill L1 with an L2 hit right after the caller has it (on the next loop turn).

        The L1 insert (cachetools) costs a few µs that the caller need not wait for: done
        with `call_soon`, it runs while the loop would otherwise wait for I/O. The stamp
        still guards it against writes and invalidations that come in between.
        """
        asyncio.get_running_loop().call_soon(self._fill, key, value, self._default_ttl_s, stamp)

    def _fill(self, key: str, value: JSON, ttl: float, stamp: int) -> bool:
        """`_put` unless the key or L1 changed since the read began (takes the lock)."""
        if stamp != self._changes and not self._unchanged(key, stamp):
            return False
        with self._lock:
            self._put(key, value, ttl)
        return True

    def _forget(self, key: str, stamp: int) -> None:
        """L2 says `key` is gone: drop the untrusted L1 entry (takes the lock)."""
        if self._unchanged(key, stamp):
            with self._lock:
                self._l1.pop(key, None)

    def _drop(self, key: str) -> None:
        self._l1.pop(key, None)
        if self._stale is not None:
            self._stale.pop(key, None)

    def _ttl(self, ttl_s: float | None) -> float:
        if ttl_s is None:
            return self._default_ttl_s
        if not ttl_s > 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s!r}")
        return float(ttl_s)

    # -- L2 internals ---------------------------------------------------------------------

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, TimeoutError | RedisTimeoutError):
            self._l2_timeout()
        else:
            self._l2_error()
        self._redis_failure()
        _log.debug("cache: redis operation failed: %s", _describe(exc))

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
            return await pipe.execute()

        return await self._guarded_l2(write)

    async def _l2_delete(self, key: str) -> bool:
        redis = self._redis
        if redis is None:
            return False

        async def remove() -> object:
            pipe = redis.pipeline(transaction=False)
            pipe.delete(self._prefix + key)
            pipe.publish(self.channel, self._message(key, "delete"))
            return await pipe.execute()

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

    # -- invalidations and trust ------------------------------------------------------------

    def _apply_invalidation(self, data: object) -> None:
        decoded = decode_message(data)
        if decoded is None:
            _log.debug("cache: ignored a malformed invalidation: %r", data)
            return
        key, sender = decoded
        if sender == self.instance_id:
            return
        with self._lock:
            self._touch(key)
            self._drop(key)

    def _update_trust(self) -> None:
        self._trusted = self._disabled or (self._subscribed and not self._l2_outage)

    def _on_breaker(self, old: CircuitState, new: CircuitState) -> None:
        if self._disabled or self._closed:
            return
        if new is _OPEN:
            if not self._l2_outage:
                _log.warning("cache %s: Redis breaker OPEN, serving from L1", self.instance_id)
            self._l2_outage = True
            self._update_trust()
            if self._subscriber is not None:
                self._subscriber.interrupt()  # no network attempt while OPEN
            self._spawn(self._drop_idle_connections())
        elif new is _CLOSED and self._l2_outage:
            self._l2_outage = False
            self.flush_on_reconnect("redis breaker closed after an outage")
            self._update_trust()
            self._start_resync()

    def _on_subscribed(self) -> None:
        self.subscriptions += 1
        self.flush_on_reconnect("subscribed" if self.subscriptions == 1 else "resubscribed")
        self._start_resync()
        self._subscribed = True
        self._update_trust()
        self._subscribed_event.set()

    def _on_unsubscribed(self, reason: str) -> None:
        self._subscribed = False
        self._update_trust()
        self._subscribed_event.clear()
        if not self._closed:
            self._spawn(self._drop_idle_connections())  # they may be dead too
            _log.warning("cache %s: invalidation subscription lost (%s)", self.instance_id, reason)

    def _count_failure(self) -> None:
        self._redis_failure()

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

    def _spawn(self, coro: Coroutine[None, None, None]) -> None:
        """Run `coro` in a tracked background task (awaited by `aclose`)."""
        try:
            task = asyncio.get_running_loop().create_task(coro)
        except RuntimeError:  # no loop (a transition outside asyncio): nothing to do
            coro.close()
            return
        self._background.add(task)
        task.add_done_callback(self._background.discard)
