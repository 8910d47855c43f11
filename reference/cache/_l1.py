"""L1: the in-process store, its stale copies, and the fill stamp.

L1 is a cachetools TTLCache, bounded, least recently used entry first out. When L2 and
the loader both fail, a copy kept past its L1 freshness is served, marked `"stale"`, for
up to `cache_stale_window_s` (the stale copies, bounded like L1, oldest write first out).

An invalidation for a key drops both of its copies. A read whose key was written or
invalidated while it was in flight does not fill L1 (the fill stamp). An L2 hit fills L1
on the next loop turn, after the caller has its value, for `cache_l1_ttl_s` whatever the
L2 key's remaining TTL (a `ttl_s` shorter than L1's bounds the entries this instance
writes).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeAlias

from cachetools import TTLCache

from reference.cache._common import JSON, CacheConfig, CacheResult, _CacheBase
from reference.metrics import ResilienceMetrics


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


class _L1Store(_CacheBase):
    """L1 entries, stale copies and the change stamps that guard fills."""

    def __init__(
        self,
        config: CacheConfig,
        timer: Callable[[], float],
        metrics: ResilienceMetrics | None,
        instance_id: str,
    ) -> None:
        super().__init__(config, timer, metrics, instance_id)
        self._default_ttl_s = config.ttl_s
        self._l1_ttl_s = config.l1_ttl_s
        self._stale_window_s = config.stale_window_s
        size = config.l1_max_items
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

    def in_l1(self, key: str) -> bool:
        """Whether L1 holds a fresh entry for `key` (trusted or not)."""
        return self._l1_lookup(key) is not None

    def l1_size(self) -> int:
        """How many entries L1 holds (expired ones not yet evicted included)."""
        with self._lock:
            return len(self._l1)

    def flush(self) -> None:
        """Drop every L1 entry and every stale copy."""
        with self._lock:
            self._changes += 1
            self._flushed_at = self._changes
            self._l1.clear()
            if self._stale is not None:
                self._stale.clear()

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

    def _stale_copy(self, key: str) -> CacheResult | None:
        store = self._stale
        if store is None:
            return None
        with self._lock:
            copy = store.get(key)
        if copy is None or self._now() >= copy[2]:
            return None
        return CacheResult(copy[0], "stale")

    # -- call with the lock held unless said otherwise ----------------------------------

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
