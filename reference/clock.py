"""Injected time: one `Clock` for monotonic time, wall-clock time and sleeping.

`now()` is wall-clock time as float seconds since the epoch (UTC), the one shape used
everywhere (events turn it into an aware datetime, metrics store it, alerts format it).
Background loops sleep through `sleep()`, so a `FakeClock` can drive them in tests.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "FakeClock", "MonotonicClock", "SystemClock"]


class MonotonicClock(Protocol):
    """The part of a `Clock` that only tells monotonic time (e.g. for a history recorder)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (only differences mean anything)."""
        ...


class Clock(MonotonicClock, Protocol):
    """Monotonic time, wall-clock time (epoch seconds) and an awaitable sleep."""

    def now(self) -> float:
        """Wall-clock time: seconds since the epoch, UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of this clock's time."""
        ...


class SystemClock:
    """The process's clocks and `asyncio.sleep`."""

    def monotonic(self) -> float:
        """`time.monotonic()`."""
        return time.monotonic()

    def now(self) -> float:
        """`time.time()`."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """`asyncio.sleep(seconds)`."""
        await asyncio.sleep(seconds)


class FakeClock:
    """A clock that only moves when told to (for tests).

    `advance()` moves monotonic and wall time together and wakes the sleepers that are
    due; `sleep()` of zero or less only yields to the event loop.
    """

    def __init__(self, start: float = 1000.0, wall: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall - start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        """The fake monotonic time."""
        return self._now

    def now(self) -> float:
        """The fake wall-clock time (moves with `monotonic`)."""
        return self._now + self._wall_offset

    async def sleep(self, seconds: float) -> None:
        """Wait until `advance()` has moved the clock `seconds` further."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        await future

    @property
    def sleepers(self) -> int:
        """How many sleeps are waiting (cancelled ones not yet woken included)."""
        return len(self._sleepers)

    def advance(self, seconds: float) -> None:
        """Move the clock forward and wake every sleeper now due."""
        if seconds < 0:
            raise ValueError("a clock never goes back")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)


SYSTEM_CLOCK = SystemClock()
