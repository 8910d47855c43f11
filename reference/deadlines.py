"""Hard deadlines for many short operations, enforced by one ticker task.

`asyncio.timeout` schedules a TimerHandle per call (a heap push with Python-level
comparisons, then its cancellation): about 5 µs on a 60 µs Redis GET, measured on the
cache's L2 hit path. `Deadlines` keeps the deadlines of the operations in flight in a
dict instead, and one ticker task wakes every `resolution_s` to cancel the tasks past
theirs. A deadline therefore holds to within `resolution_s`.

An operation brackets its await with `enter()` and exactly one `leave()`:

    task = deadlines.enter()
    try:
        result = await operation()
    except asyncio.CancelledError:
        if deadlines.leave(task):   # the deadline cancelled it: a timeout
            ...
        raise                       # an outside cancellation still propagates
    ...

Like `asyncio.timeout`, a cancellation the deadline caused is withdrawn (`uncancel`), so
only outside cancellations reach the caller. Use from the event loop's thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

__all__ = ["Deadlines"]


class Deadlines:
    """Deadlines of `timeout_s` for the operations in flight; see the module docstring."""

    def __init__(self, timeout_s: float, resolution_s: float | None = None) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.timeout_s = timeout_s
        self.resolution_s = resolution_s if resolution_s else max(timeout_s / 10, 0.001)
        self._due: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._closed = False

    def enter(self) -> asyncio.Task[Any]:
        """Start the current task's deadline; returns the task to pass to `leave`.

        The ticker starts with the first deadline. After `aclose()` deadlines are no
        longer enforced (the operation's own timeouts are all that is left).
        """
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Deadlines.enter() needs a running task")
        loop = task.get_loop()
        self._due[task] = loop.time() + self.timeout_s
        if self._ticker is None and not self._closed:
            self._ticker = loop.create_task(self._tick(loop), name="deadlines")
        return task

    def leave(self, task: asyncio.Task[Any]) -> bool:
        """End `task`'s deadline; True when the deadline (alone) cancelled it."""
        del self._due[task]
        if task not in self._expired:
            return False
        self._expired.discard(task)
        return task.uncancel() == 0

    @property
    def in_flight(self) -> int:
        """How many operations are being timed right now."""
        return len(self._due)

    async def aclose(self) -> None:
        """Stop the ticker (idempotent)."""
        self._closed = True
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    async def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        due, expired = self._due, self._expired
        while True:
            await asyncio.sleep(self.resolution_s)
            if not due:
                continue
            now = loop.time()
            for task, deadline in list(due.items()):
                if deadline <= now and task not in expired:
                    expired.add(task)
                    task.cancel()
