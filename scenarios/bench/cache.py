"""`stormproof bench cache`: the hybrid cache's hot paths against raw baselines.

Brings up its own local stack and measures, in one process:

- L1 hit: `await HybridCache.get` of an L1-resident key vs a bare `TTLCache.get`. The
  headline `l1_hit_ratio` compares against the *sync* `TTLCache.get` (N awaited calls in
  one coroutine vs N plain calls), so it includes the price of being a coroutine, which
  every caller pays. `l1_hit_vs_async_ratio` compares against an `async def` wrapper
  around `TTLCache.get`, awaited the same way: the cache's own overhead alone.
- L2 hit: `get` of keys held by Redis but not by L1 (each key read once) vs a bare
  redis.asyncio GET of the same keys on the same server (direct URL), same client settings.
- Breaker: `await breaker.call(noop)` vs `await noop()` (CLOSED), overhead in µs per call;
  also the `try_acquire()` permit path the cache itself uses.
- Open breaker: `get` of a key absent from L1 while Redis is black-holed (through the
  proxy) and the breaker is OPEN vs the L1 hit above.

How: metrics are on (as in the service); the garbage collector is paused while timing.
CPU-bound loops run interleaved, round after round (each baseline next to its subject),
and each figure is the best round (the timeit convention: the least disturbed by other
processes). L2 calls are timed one by one, alternating bare GET and cache `get` key by
key, and each figure is the median call. Figures are reported, not asserted.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from cachetools import TTLCache

from reference.breaker import BreakerConfig, CircuitBreaker, CircuitState
from reference.cache import HybridCache
from reference.config import Settings
from reference.invalidation import SubscriberTiming
from reference.metrics import ResilienceMetrics
from reference.redis_client import make_redis
from reference.service.configs import cache_config, redis_client
from scenarios.stack import Stack, open_stack

__all__ = ["BenchPlan", "as_json", "main", "measure"]

TARGETS: dict[str, float] = {
    "l1_hit_ratio": 2.5,
    "l2_hit_ratio": 1.15,
    "breaker_overhead_us": 1.0,
    "open_get_ratio": 2.0,
}
OP_TIMEOUT_S = 0.25
_PREFIX = "bench:"
Loop = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class BenchPlan:
    """How many calls each CPU-bound round times, how many rounds, how many L2 keys."""

    calls: int = 100_000
    rounds: int = 9
    l2_keys: int = 5_000

    @classmethod
    def quick(cls) -> BenchPlan:
        """A short plan for CI (`--quick`, the test suite)."""
        return cls(calls=10_000, rounds=3, l2_keys=300)


def main(json_output: bool = False, quick: bool = False) -> int:
    """Run the whole bench on a fresh local stack; print a table or one JSON object."""
    plan = BenchPlan.quick() if quick else BenchPlan()
    with open_stack("local") as stack, _quiet("reference.cache"):
        figures = asyncio.run(measure(stack, plan))
    if json_output:
        print(json.dumps(as_json(figures, plan), sort_keys=True))
    else:
        _print_table(figures, plan)
    return 0


async def measure(stack: Stack, plan: BenchPlan) -> dict[str, float]:
    """Every figure, in µs per call (see the module docstring)."""
    settings = Settings(
        redis_url=stack.urls.redis_direct_url,
        redis_op_timeout_s=OP_TIMEOUT_S,
        cache_l1_max_items=plan.l2_keys + 1_000,
        cache_l2_key_prefix=_PREFIX,
        instance_id="bench",
    )
    healthy = _cache(settings, CircuitBreaker("redis", BreakerConfig(failure_threshold=1000)))
    open_breaker = CircuitBreaker("redis", BreakerConfig(failure_threshold=3, reset_timeout_s=3600))
    proxied = replace(settings, redis_url=stack.urls.redis_url, redis_op_timeout_s=0.05)
    cut_off = _cache(proxied, open_breaker)
    figures: dict[str, float] = {}
    async with healthy, cut_off:
        await healthy.wait_subscribed(5.0)
        figures.update(await _l2(healthy, settings, plan))
        with _black_hole(stack):
            await _trip(cut_off, open_breaker)
            figures.update(await _cpu_bound(healthy, cut_off, plan))
            assert open_breaker.state is CircuitState.OPEN
    return figures


def as_json(figures: dict[str, float], plan: BenchPlan) -> dict[str, object]:
    """The headline ratios at the top level; raw figures (µs per call) under `figures_us`."""
    out: dict[str, object] = {key: round(value, 4) for key, value in _ratios(figures).items()}
    out["figures_us"] = {key: round(value, 4) for key, value in figures.items()}
    out["targets"] = dict(TARGETS)
    out["plan"] = {"calls": plan.calls, "rounds": plan.rounds, "l2_keys": plan.l2_keys}
    return out


# -- set-up ----------------------------------------------------------------------------------


def _cache(settings: Settings, breaker: CircuitBreaker) -> HybridCache:
    timing = SubscriberTiming(ping_interval_s=60.0)
    client = redis_client(settings, settings.redis_op_timeout_s)
    return HybridCache(
        cache_config(settings),
        breaker,
        redis=client,
        owns_redis=True,
        metrics=ResilienceMetrics(),
        timing=timing,
    )


@contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """The bench opens a breaker on purpose: keep the cache's warnings off the output."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


@contextmanager
def _black_hole(stack: Stack) -> Iterator[None]:
    proxy = stack.redis_proxy
    with (
        proxy.toxic("timeout", timeout=0, stream="upstream"),
        proxy.toxic("timeout", timeout=0, stream="downstream"),
    ):
        yield


async def _trip(cache: HybridCache, breaker: CircuitBreaker) -> None:
    """Open the breaker the honest way: failed calls against the black hole."""
    for i in range(20):
        if breaker.state is CircuitState.OPEN:
            return
        await cache.get(f"trip-{i}")
    raise RuntimeError("the breaker did not open against a black-holed Redis")


# -- the measurements ------------------------------------------------------------------------


async def _l2(cache: HybridCache, settings: Settings, plan: BenchPlan) -> dict[str, float]:
    """Per-call L2 latency: bare GET and cache `get` alternate, key by key."""
    bare = make_redis(settings.redis_url, OP_TIMEOUT_S)
    names = [f"l2-{i}" for i in range(plan.l2_keys)]
    payload = json.dumps({"v": 1, "nome": "beneficio", "valor": 1234})
    try:
        await bare.mset({_PREFIX + name: payload for name in names})
        await bare.get(_PREFIX + names[0])  # warm both connections
        await cache.get("warm-up")
        ours: list[float] = []
        baseline: list[float] = []
        clock = time.perf_counter
        bare_get, cache_get = bare.get, cache.get
        with _gc_paused():
            for i, name in enumerate(names):
                raw = _PREFIX + name
                if i % 2:
                    started = clock()
                    await bare_get(raw)
                    middle = clock()
                    await cache_get(name)
                    ended = clock()
                    baseline.append(middle - started)
                    ours.append(ended - middle)
                else:
                    started = clock()
                    await cache_get(name)
                    middle = clock()
                    await bare_get(raw)
                    ended = clock()
                    ours.append(middle - started)
                    baseline.append(ended - middle)
        await asyncio.sleep(0)  # the last L1 fill runs on the next loop turn
        assert cache.in_l1(names[-1])  # they were L2 hits, which filled L1
        await bare.delete(*(_PREFIX + name for name in names))
    finally:
        await bare.aclose()
    return {
        "l2_hit_us": statistics.median(ours) * 1e6,
        "bare_get_us": statistics.median(baseline) * 1e6,
    }


async def _cpu_bound(
    healthy: HybridCache, cut_off: HybridCache, plan: BenchPlan
) -> dict[str, float]:
    """Every in-process figure, interleaved round by round; the best round of each."""
    calls = plan.calls
    ttl: TTLCache[str, int] = TTLCache(1000, 300)
    ttl["k"] = 1
    ttl_get = ttl.get
    await healthy.set("hot", {"v": 1})
    assert await healthy.get("hot") is not None and healthy.l1_trusted
    assert await cut_off.get("absent") is None
    hit, open_get = healthy.get, cut_off.get
    breaker = CircuitBreaker("bench", BreakerConfig())
    call, acquire = breaker.call, breaker.try_acquire

    async def aget(key: str) -> int | None:
        return ttl_get(key)

    async def noop() -> None:
        return None

    async def ttl_sync() -> None:  # no await inside: N plain sync calls
        for _ in range(calls):
            ttl_get("k")

    async def ttl_async() -> None:
        for _ in range(calls):
            await aget("k")

    async def l1_hit() -> None:
        for _ in range(calls):
            await hit("hot")

    async def open_miss() -> None:
        for _ in range(calls):
            await open_get("absent")

    async def bare_noop() -> None:
        for _ in range(calls):
            await noop()

    async def guarded() -> None:
        for _ in range(calls):
            await call(noop)

    async def permitted() -> None:
        for _ in range(calls):
            permit = acquire()
            assert permit is not None
            await noop()
            permit.success()

    loops: dict[str, Loop] = {
        "ttlcache_get_us": ttl_sync,
        "ttlcache_async_get_us": ttl_async,
        "l1_hit_us": l1_hit,
        "open_miss_us": open_miss,
        "noop_us": bare_noop,
        "breaker_call_us": guarded,
        "breaker_permit_us": permitted,
    }
    best = {name: float("inf") for name in loops}
    for _ in range(plan.rounds):
        for name, loop in loops.items():
            best[name] = min(best[name], await _timed(loop, calls))
    return best


async def _timed(loop: Loop, calls: int) -> float:
    with _gc_paused():
        started = time.perf_counter()
        await loop()
        return (time.perf_counter() - started) / calls * 1e6


@contextmanager
def _gc_paused() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# -- reporting -------------------------------------------------------------------------------


def _ratios(f: dict[str, float]) -> dict[str, float]:
    return {
        "l1_hit_ratio": f["l1_hit_us"] / f["ttlcache_get_us"],
        "l1_hit_vs_async_ratio": f["l1_hit_us"] / f["ttlcache_async_get_us"],
        "l2_hit_ratio": f["l2_hit_us"] / f["bare_get_us"],
        "breaker_overhead_us": f["breaker_call_us"] - f["noop_us"],
        "breaker_permit_overhead_us": f["breaker_permit_us"] - f["noop_us"],
        "open_get_ratio": f["open_miss_us"] / f["l1_hit_us"],
    }


_ROWS = (  # label, ours, baseline, baseline label, figure key, unit
    ("L1 hit", "l1_hit_us", "ttlcache_get_us", "TTLCache.get", "l1_hit_ratio", "x"),
    (
        "L1 hit",
        "l1_hit_us",
        "ttlcache_async_get_us",
        "async TTLCache.get",
        "l1_hit_vs_async_ratio",
        "x",
    ),
    ("L2 hit", "l2_hit_us", "bare_get_us", "redis GET", "l2_hit_ratio", "x"),
    ("breaker.call", "breaker_call_us", "noop_us", "noop()", "breaker_overhead_us", " µs"),
    ("permit path", "breaker_permit_us", "noop_us", "noop()", "breaker_permit_overhead_us", " µs"),
    ("miss, OPEN", "open_miss_us", "l1_hit_us", "L1 hit", "open_get_ratio", "x"),
)
"""`permit path`: try_acquire() + success(), as the cache calls the breaker."""


def _print_table(figures: dict[str, float], plan: BenchPlan) -> None:
    from rich.console import Console
    from rich.table import Table

    ratios = _ratios(figures)
    table = Table(
        title=f"cache bench, µs per call: best of {plan.rounds} rounds of {plan.calls:,}; "
        f"L2: median of {plan.l2_keys:,} alternating calls"
    )
    for column in ("measure", "µs", "baseline µs", "baseline", "figure", "target"):
        table.add_column(column, justify="left" if column in ("measure", "baseline") else "right")
    for label, ours, base, base_label, key, unit in _ROWS:
        value, target = ratios[key], TARGETS.get(key)
        verdict = "-"
        if target is not None:
            verdict = f"<= {target:g}{unit} " + ("ok" if value <= target else "MISSED")
        table.add_row(
            label,
            f"{figures[ours]:.3f}",
            f"{figures[base]:.3f}",
            base_label,
            f"{value:.3f}{unit}",
            verdict,
        )
    Console().print(table)
