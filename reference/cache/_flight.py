"""Single-flight, fail-safe loading: `get_or_load`.

`get_or_load` is single-flight per key and fail-safe: when L2 and the loader both fail,
a copy kept past its L1 freshness is served, marked `"stale"`, for up to
`cache_stale_window_s`. A value it just loaded is marked `"loader"`. What reaches the
caller: the loader's exception when no stale copy can stand in (the data source failed,
not Redis).
"""

from __future__ import annotations

import asyncio
import json
import logging

from reference.cache._common import JSON, CacheResult, Loader, _dumps
from reference.cache._l2 import _L2
from reference.cache._trust import _Trust
from reference.errors import describe

_log = logging.getLogger("reference.cache")


class _LeaderCancelled(Exception):
    """The single-flight leader was cancelled: followers elect a new one."""


class _SingleFlight(_Trust):
    """One loader call per key at a time; followers share the leader's outcome."""

    _flights: dict[str, asyncio.Future[CacheResult | None]]

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
        got = await self._l2_lookup(key)  # never an L2 value of a key awaiting resync
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
            _log.debug("cache: loader for %r failed (%s), serving stale", key, describe(exc))
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
