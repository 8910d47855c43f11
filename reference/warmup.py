"""Cache warming: load the critical keys in the background, never blocking start-up.

`start_warm_up(cache, loaders)` returns the running task at once; `warm_up` is the
coroutine behind it. It first waits (bounded) for the cache's invalidation subscription:
the first subscription flushes L1, so loading before it would be wasted. Each key goes
through `cache.get_or_load`, so a key L2 already holds only fills L1, and a request
racing the warm-up shares its load (single-flight). A failed
attempt (the loader raised, or only a stale copy could be served) is logged and retried
with exponential backoff, up to `policy.attempts` times; the whole run is bounded by
`policy.total_timeout_s`, after which the keys still pending are reported as failed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from reference.cache import CacheResult, Loader
from reference.clock import SYSTEM_CLOCK, Clock
from reference.errors import describe

__all__ = ["WarmupPolicy", "WarmupReport", "start_warm_up", "warm_up"]

_log = logging.getLogger(__name__)
_Outcome = Literal["loaded", "absent", "failed"]


class _Cache(Protocol):
    async def get_or_load(
        self, key: str, loader: Loader, ttl_s: float | None = None
    ) -> CacheResult | None: ...

    async def wait_subscribed(self, timeout_s: float) -> bool: ...


@dataclass(frozen=True, slots=True)
class WarmupPolicy:
    """Retries, backoff, parallelism and the overall bound of a warm-up run."""

    attempts: int = 3
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 5.0
    total_timeout_s: float = 30.0
    concurrency: int = 4
    subscription_wait_s: float = 5.0
    """How long to wait for the invalidation subscription before loading anyway."""

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.concurrency < 1:
            raise ValueError("attempts and concurrency must be >= 1")
        if self.backoff_initial_s < 0 or self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("need 0 <= backoff_initial_s <= backoff_max_s")
        if self.total_timeout_s <= 0 or self.subscription_wait_s < 0:
            raise ValueError("total_timeout_s must be positive, subscription_wait_s >= 0")


@dataclass(frozen=True, slots=True)
class WarmupReport:
    """What a run achieved: keys now cached, keys the source lacks, keys given up on."""

    loaded: tuple[str, ...]
    absent: tuple[str, ...]
    failed: tuple[str, ...]
    timed_out: bool
    elapsed_s: float


async def warm_up(
    cache: _Cache,
    loaders: Mapping[str, Loader],
    policy: WarmupPolicy | None = None,
    *,
    ttl_s: float | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> WarmupReport:
    """Load every key of `loaders` into `cache`; never raises for a loader's failure."""
    policy = policy or WarmupPolicy()
    started = clock.monotonic()
    outcomes: dict[str, _Outcome] = {}
    slots = asyncio.Semaphore(policy.concurrency)

    async def one(key: str, loader: Loader) -> None:
        backoff = policy.backoff_initial_s
        for attempt in range(1, policy.attempts + 1):
            async with slots:
                try:
                    result = await cache.get_or_load(key, loader, ttl_s)
                except Exception as exc:
                    problem = describe(exc)
                else:
                    if result is None:
                        outcomes[key] = "absent"
                        return
                    if result.source != "stale":
                        outcomes[key] = "loaded"
                        return
                    problem = "only a stale copy was available"
            _log.warning(
                "warm-up: %r attempt %d/%d failed: %s", key, attempt, policy.attempts, problem
            )
            if attempt < policy.attempts:
                await clock.sleep(backoff)
                backoff = min(backoff * 2, policy.backoff_max_s)
        outcomes[key] = "failed"

    timed_out = False
    try:
        async with asyncio.timeout(policy.total_timeout_s):
            if not await cache.wait_subscribed(policy.subscription_wait_s):
                _log.info("warm-up: loading without an invalidation subscription")
            async with asyncio.TaskGroup() as group:
                for key, loader in loaders.items():
                    group.create_task(one(key, loader), name=f"warm-up {key}")
    except TimeoutError:
        timed_out = True
    report = WarmupReport(
        loaded=_keys(loaders, outcomes, "loaded"),
        absent=_keys(loaders, outcomes, "absent"),
        failed=tuple(k for k in loaders if outcomes.get(k, "failed") == "failed"),
        timed_out=timed_out,
        elapsed_s=clock.monotonic() - started,
    )
    log = _log.warning if report.failed else _log.info
    log(
        "warm-up: %d loaded, %d absent, %d failed%s in %.2f s",
        len(report.loaded),
        len(report.absent),
        len(report.failed),
        " (timed out)" if timed_out else "",
        report.elapsed_s,
    )
    return report


def start_warm_up(
    cache: _Cache,
    loaders: Mapping[str, Loader],
    policy: WarmupPolicy | None = None,
    *,
    ttl_s: float | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> asyncio.Task[WarmupReport]:
    """Run `warm_up` as a background task (keep a reference; cancel it at shutdown)."""
    return asyncio.create_task(
        warm_up(cache, dict(loaders), policy, ttl_s=ttl_s, clock=clock), name="cache-warm-up"
    )


def _keys(
    loaders: Mapping[str, Loader], outcomes: Mapping[str, _Outcome], wanted: str
) -> tuple[str, ...]:
    return tuple(k for k in loaders if outcomes.get(k) == wanted)
