"""What every part of the cache shares: the value types, the config, JSON coding, the
metric hooks and the base that holds the lock, the clock and the background tasks.

Values returned are shared with the cache: treat them as read-only.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, TypeAlias

from reference.metrics import ResilienceMetrics

JSON: TypeAlias = "bool | int | float | str | list[JSON] | dict[str, JSON] | None"
CacheSource = Literal["l1", "l2", "stale", "loader"]
Loader = Callable[[], Awaitable[JSON]]
"""Loads a value from the source of truth; None means "no such value" (not cached)."""


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """The cache's settings (built from `Settings` in `reference/service/configs.py`).

    `disabled` (DISABLE_REDIS): L1 only, breaker held open, no Redis client.
    """

    instance_id: str = "default"
    key_prefix: str = "stormproof:"
    ttl_s: float = 3600.0
    l1_ttl_s: float = 300.0
    l1_max_items: int = 1000
    stale_window_s: float = 300.0
    op_timeout_s: float = 0.25
    disabled: bool = False
    min_replicas: int = 0
    """Writes and deletes count as reaching L2 only once WAIT saw this many replicas take
    them (CACHE_MIN_REPLICAS; a replicated Redis: docs/redis-replication.md)."""


@dataclass(frozen=True, slots=True)
class CacheResult:
    """A value and where it came from: `"loader"` only from `get_or_load`."""

    value: JSON
    source: CacheSource


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
        self.outage_key_dropped: Callable[[], None] = _noop
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
        self.outage_key_dropped = m.record_outage_keys_dropped


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


class _CacheBase:
    """State every layer uses: config, timer, lock, metric hooks, background tasks."""

    def __init__(
        self,
        config: CacheConfig,
        timer: Callable[[], float],
        metrics: ResilienceMetrics | None,
        instance_id: str,
    ) -> None:
        self._config = config
        self._now = timer
        self._lock = threading.Lock()
        self.instance_id = instance_id
        self._disabled = config.disabled
        self._closed = False
        self._background: set[asyncio.Task[None]] = set()
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
        self._outage_key_dropped = hooks.outage_key_dropped

    def _spawn(self, coro: Coroutine[None, None, None]) -> None:
        """Run `coro` in a tracked background task (awaited by `aclose`)."""
        try:
            task = asyncio.get_running_loop().create_task(coro)
        except RuntimeError:  # no loop (a transition outside asyncio): nothing to do
            coro.close()
            return
        self._background.add(task)
        task.add_done_callback(self._background.discard)
