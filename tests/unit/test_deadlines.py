"""Deadlines: one ticker cuts operations off at their deadline; outside cancellations
still propagate; the task is left usable afterwards."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from reference.deadlines import Deadlines

TIMEOUT_S, RESOLUTION_S = 0.1, 0.01


@pytest.fixture
async def deadlines() -> AsyncIterator[Deadlines]:
    d = Deadlines(TIMEOUT_S, RESOLUTION_S)
    try:
        yield d
    finally:
        await d.aclose()


async def bounded(deadlines: Deadlines, work: float) -> str:
    """Sleep `work` seconds under a deadline; report how it ended."""
    task = deadlines.enter()
    try:
        await asyncio.sleep(work)
    except asyncio.CancelledError:
        if deadlines.leave(task):
            return "timeout"
        raise
    deadlines.leave(task)
    return "done"


async def test_an_operation_past_its_deadline_is_cut_off(deadlines: Deadlines) -> None:
    """A 10 s operation ends at the deadline (within the resolution) as a timeout."""
    started = time.monotonic()
    outcome = await asyncio.wait_for(bounded(deadlines, 10.0), 2.0)
    elapsed = time.monotonic() - started
    assert outcome == "timeout"
    assert TIMEOUT_S <= elapsed < TIMEOUT_S + RESOLUTION_S + 0.05
    assert deadlines.in_flight == 0


async def test_the_task_is_usable_after_a_timeout(deadlines: Deadlines) -> None:
    """The deadline's cancellation is withdrawn: the task can await again, and is not
    cancelled later."""

    async def twice() -> tuple[str, int]:
        first = await bounded(deadlines, 10.0)
        await asyncio.sleep(TIMEOUT_S * 2)
        current = asyncio.current_task()
        assert current is not None
        return first, current.cancelling()

    assert await asyncio.wait_for(twice(), 2.0) == ("timeout", 0)


async def test_an_operation_in_time_is_untouched(deadlines: Deadlines) -> None:
    """Finishing before the deadline: no cancellation then or later."""

    async def quick_then_wait() -> str:
        outcome = await bounded(deadlines, TIMEOUT_S / 4)
        await asyncio.sleep(TIMEOUT_S * 2)  # past the old deadline: nothing happens
        return outcome

    assert await asyncio.wait_for(quick_then_wait(), 2.0) == "done"


async def test_an_outside_cancellation_propagates(deadlines: Deadlines) -> None:
    """Cancelling the task before its deadline is a cancellation, not a timeout."""
    task = asyncio.create_task(bounded(deadlines, 10.0))
    await asyncio.sleep(TIMEOUT_S / 4)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert deadlines.in_flight == 0


async def test_many_concurrent_operations_each_get_their_deadline(deadlines: Deadlines) -> None:
    """100 concurrent operations, half too slow: the slow ones time out, the rest finish."""
    works = [TIMEOUT_S / 5 if i % 2 else 10.0 for i in range(100)]
    started = time.monotonic()
    outcomes = await asyncio.wait_for(asyncio.gather(*(bounded(deadlines, w) for w in works)), 2.0)
    assert outcomes == ["done" if i % 2 else "timeout" for i in range(100)]
    assert time.monotonic() - started < TIMEOUT_S + RESOLUTION_S + 0.1


async def test_after_aclose_deadlines_are_not_enforced() -> None:
    """aclose stops the ticker; later operations run unbounded (their own timeouts apply)."""
    deadlines = Deadlines(0.02, 0.005)
    await deadlines.aclose()
    assert await asyncio.wait_for(bounded(deadlines, 0.06), 1.0) == "done"


def test_rejects_a_non_positive_timeout() -> None:
    """A deadline needs a positive timeout."""
    with pytest.raises(ValueError):
        Deadlines(0)
