"""A read racing a delete on real Redis: it starts after the delete dropped the key from
L1 and reaches Redis before the DEL (another connection), so it reads the old value and
fills L1 with it. The delete must not leave it there: this instance ignores its own
invalidation, so it would be served until the L1 TTL (found by `stormproof property
--examples 20 --seed 1`: a key deleted during `postgres-down@7+9` still read on i1 in
the final reads). The race is made certain by running the read inside the delete, just
before its DEL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from reference.cache import JSON, CacheResult, HybridCache
from scenarios.stack import Stack
from tests.cache_support import cache_settings, make_cache, redis_breaker

pytestmark = pytest.mark.integration
V1: JSON = {"v": 1}


class ReadBeforeDel(HybridCache):
    """The reference, with a read of the key run after the L1 drop and before the DEL
    (its L1 fill done): the race window, held open."""

    raced: CacheResult | None = None

    async def _l2_delete(self, key: str) -> bool:
        self.raced = await self.get(key)
        await asyncio.sleep(0.01)  # the read's L1 fill runs on a later loop turn
        return await super()._l2_delete(key)


class DropsOnceOnly(ReadBeforeDel):
    """The broken variant (the reference before the fix): L1 is dropped before the DEL
    only, so the racing read's fill stays."""

    async def delete(self, key: str) -> bool:
        with self._lock:
            self._touch(key)
            self._drop(key)
        return self._synced(key, await self._l2_delete(key))


@pytest.fixture
async def cache(stormproof_stack: Stack, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A cache of the kind the test asks for on the stack's Redis (closed at the end)."""
    settings = cache_settings(redis_url=stormproof_stack.urls.redis_url, instance_id="race")
    made = make_cache(settings, redis_breaker(settings), request.param)
    await made.start()
    try:
        assert await made.wait_subscribed(5.0)
        yield made
    finally:
        await made.aclose()


@pytest.mark.parametrize(
    ("cache", "broken"),
    [(ReadBeforeDel, False), (DropsOnceOnly, True)],
    ids=["reference", "broken-variant-drops-once"],
    indirect=["cache"],
)
async def test_a_read_racing_a_delete_does_not_bring_the_key_back(
    cache: ReadBeforeDel, broken: bool
) -> None:
    """The racing read got the old value from L2 (the race happened); after the delete the
    key is gone from L1 and a read misses. The broken variant keeps serving v1 from L1."""
    key = f"race-{uuid.uuid4().hex[:6]}"
    assert await cache.set(key, V1) is True
    assert await cache.delete(key) is True
    assert cache.raced is not None and cache.raced == CacheResult(V1, "l2")
    after = await cache.get(key)
    if broken:
        assert after == CacheResult(V1, "l1")
    else:
        assert after is None and not cache.in_l1(key)
