"""Coherence: when L1 is trusted, and the resync after an outage.

`set` publishes an invalidation that evicts the key from the other instances' L1. L1
entries are *trusted* (served without asking L2) only while this instance is subscribed
to the invalidation channel and its L2 is not in an outage (breaker opened and not yet
closed again). An untrusted L1 entry is served only when L2 cannot answer (that is what
L1 is for during an outage), marked `"l1"`. A (re)subscription and a breaker recovery
both call `flush_on_reconnect`, which drops L1 and the stale copies: invalidations sent
while this instance was cut off were lost, so any of them may be superseded.

Keys whose last local write or delete did not reach L2 are remembered (pending); when L2
answers again they are deleted there and invalidated everywhere (the resync). Until its
delete succeeded, L2 is not read for a pending key: it may still hold the value from
before the outage, and a read between the breaker closing and the resync reaching the key
would return it and fill L1 with it. A read of a pending key settles it first (deletes it
in L2 itself) and is then a miss; while the outage lasts (until the breaker closed) or if
L2 cannot settle it, the read is served as if L2 were down (the L1 entry or the stale
copy). The set is bounded: a key pushed out of it is counted
(`stormproof_cache_outage_keys_dropped`) and logged, and the resync then deletes the whole
cache namespace in L2 and tells every instance to drop its L1 (FLUSH_ALL), since which
keys went stale is no longer known; until that flush is done every key is pending.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import OrderedDict
from collections.abc import Callable

import redis.asyncio as aioredis

from reference.breaker import CircuitBreaker, CircuitState
from reference.cache._common import JSON, CacheConfig
from reference.cache._l2 import _L2, _L2Gateway
from reference.clock import Clock
from reference.invalidation import Subscriber, SubscriberTiming, decode_message
from reference.metrics import ResilienceMetrics

_log = logging.getLogger("reference.cache")
FLUSH_ALL = "*"
"""The invalidation "key" that drops every instance's whole L1 (no real key matches it:
keys are validated as `[A-Za-z0-9_.:-]+`)."""
_SCAN_COUNT = 500
_OPEN = CircuitState.OPEN
_CLOSED = CircuitState.CLOSED


class _Trust(_L2Gateway):
    """The invalidation subscription, the trust in L1, and the post-outage resync."""

    def __init__(
        self,
        config: CacheConfig,
        timer: Callable[[], float],
        metrics: ResilienceMetrics | None,
        instance_id: str,
        breaker: CircuitBreaker,
        redis: aioredis.Redis | None,
        timing: SubscriberTiming,
        clock: Clock,
    ) -> None:
        super().__init__(config, timer, metrics, instance_id, breaker, redis, timing)
        self._subscribed = False
        self._l2_outage = breaker.state is not _CLOSED
        self._trusted = self._disabled
        self._subscribed_event = asyncio.Event()
        self.subscriptions = 0
        """How many times the invalidation subscription was (re)established."""
        self._subscriber: Subscriber | None = None
        if redis is not None:
            self._subscriber = Subscriber(
                redis,
                breaker,
                self.channel,
                op_timeout_s=self._op_timeout_s,
                timing=timing,
                clock=clock,
                on_message=self._apply_invalidation,
                on_subscribed=self._on_subscribed,
                on_lost=self._on_unsubscribed,
                on_failure=self._count_failure,
            )
        # Keys whose last local write or delete did not reach L2 (or whose invalidation was
        # not published): Redis may hold an older value the other instances will serve.
        # When L2 answers again they are deleted there and invalidated everywhere.
        self._unsynced: OrderedDict[str, None] = OrderedDict()
        self._unsynced_max = config.l1_max_items
        self._unsynced_dropped = 0
        self._resyncing = False

        ref = weakref.ref(self)

        def on_transition(name: str, old: CircuitState, new: CircuitState) -> None:
            cache = ref()
            if cache is not None:
                cache._on_breaker(old, new)

        breaker.add_listener(on_transition)

    def flush_on_reconnect(self, reason: str) -> None:
        """Called when the subscription (re)connects and when L2 recovers from an outage.

        Invalidations sent while this instance was cut off were lost, so L1 and the stale
        copies go. This is the seam the broken variant "no L1 flush on reconnect"
        overrides with a no-op.
        """
        self.flush()
        _log.info("cache %s: L1 flushed (%s)", self.instance_id, reason)

    def _synced(self, key: str, reached_l2: bool) -> bool:
        """Track writes that missed L2; after any success, resync the missed ones."""
        if self._redis is None:
            return reached_l2
        if not reached_l2:
            self._unsynced[key] = None
            self._unsynced.move_to_end(key)
            while len(self._unsynced) > self._unsynced_max:
                self._unsynced.popitem(last=False)  # bounded: the oldest is forgotten...
                self._forgot_one()  # ... but not silently
        else:
            self._unsynced.pop(key, None)
            if self._unsynced:
                self._start_resync()
        return reached_l2

    def _forgot_one(self) -> None:
        if self._unsynced_dropped == 0:
            _log.warning(
                "cache %s: more than %d keys written during the outage; the whole cache "
                "namespace will be flushed when Redis answers",
                self.instance_id,
                self._unsynced_max,
            )
        self._unsynced_dropped += 1
        self._outage_key_dropped()

    def _start_resync(self) -> None:
        pending = self._unsynced or self._unsynced_dropped
        if not self._resyncing and pending and not self._closed:
            self._resyncing = True
            self._spawn(self._resync())

    def _pending(self, key: str) -> bool:
        """Whether `key` awaits its resync: L2 may hold a value older than this
        instance's last write or delete of it (L2 is not read for it until then). After
        an overflow any key may be one that was forgotten: all are, until the flush."""
        return self._unsynced_dropped > 0 or key in self._unsynced

    async def _settle(self, key: str) -> bool:
        """Resync one pending key now (delete in L2, invalidate); True once done.

        Not while L2 is in an outage (HALF_OPEN included): the breaker's trial calls are
        left to the other operations, and the read is served from L1 as before. Not after
        an overflow either: only the resync's namespace flush settles that.
        """
        if self._l2_outage or self._unsynced_dropped or not await self._l2_delete(key):
            return False
        self._unsynced.pop(key, None)
        return True

    async def _l2_lookup(self, key: str) -> JSON | _L2:
        """`_l2_get`, except for a key awaiting resync: settled first, then MISS (its L2
        value, if any, predates a change made here), or DOWN if L2 cannot settle it."""
        if self._unsynced and self._pending(key):
            return _L2.MISS if await self._settle(key) else _L2.DOWN
        return await self._l2_get(key)

    async def _resync(self) -> None:
        """Delete in L2, and invalidate everywhere, every key written here during an outage.

        Deleting rather than re-writing never regresses a key that another instance wrote
        later; the cost is a miss (a reload from the source) instead of a stale value.
        """
        done = 0
        try:
            if self._unsynced_dropped and not await self._flush_namespace():
                return  # L2 is down again: the next recovery resumes
            for key in list(self._unsynced):
                if key not in self._unsynced:
                    continue
                if not await self._settle(key):
                    return  # L2 is down again: the next recovery resumes
                done += 1
        finally:
            if done:
                _log.info(
                    "cache %s: invalidated %d keys written during an outage", self.instance_id, done
                )
            self._resyncing = False

    async def _flush_namespace(self) -> bool:
        """Delete every key under the cache prefix in L2 and publish FLUSH_ALL; True when
        done (the forgotten keys are then accounted for)."""
        redis = self._redis
        if redis is None:
            return False
        pattern = f"{self._prefix}*"

        async def flush() -> object:
            keys = [k async for k in redis.scan_iter(match=pattern, count=_SCAN_COUNT)]
            channel = self.channel.encode()
            keys = [k for k in keys if k != channel]
            for start in range(0, len(keys), _SCAN_COUNT):
                await redis.unlink(*keys[start : start + _SCAN_COUNT])
            return await redis.publish(self.channel, self._message(FLUSH_ALL, "delete"))

        if not await self._guarded_l2(flush):
            return False
        _log.warning(
            "cache %s: flushed the cache namespace (%d outage keys were forgotten)",
            self.instance_id,
            self._unsynced_dropped,
        )
        self._unsynced_dropped = 0
        self._unsynced.clear()
        return True

    def _apply_invalidation(self, data: object) -> None:
        decoded = decode_message(data)
        if decoded is None:
            _log.debug("cache: ignored a malformed invalidation: %r", data)
            return
        key, sender = decoded
        if sender == self.instance_id:
            return
        if key == FLUSH_ALL:
            self.flush_on_reconnect("another instance flushed the cache namespace")
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
