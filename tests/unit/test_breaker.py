"""CircuitBreaker: transitions on a fake clock, trial admission, cancellation, listeners."""

from __future__ import annotations

import asyncio

import pytest

from reference.breaker import (
    BreakerConfig,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
)
from reference.clock import FakeClock

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
EPS = 1e-6


class Dependency:
    """An async dependency that counts calls and fails on demand."""

    def __init__(self) -> None:
        self.calls = 0
        self.error: BaseException | None = None

    async def __call__(self) -> str:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return "ok"


def make(
    threshold: int = 3, reset_s: float = 10.0, half_open: int = 2
) -> tuple[CircuitBreaker, FakeClock, list[tuple[str, CircuitState, CircuitState]]]:
    clock = FakeClock()
    breaker = CircuitBreaker("dep", BreakerConfig(threshold, reset_s, half_open), clock)
    seen: list[tuple[str, CircuitState, CircuitState]] = []
    breaker.add_listener(lambda name, old, new: seen.append((name, old, new)))
    return breaker, clock, seen


async def fail_times(breaker: CircuitBreaker, n: int, error: Exception | None = None) -> None:
    dep = Dependency()
    dep.error = error or RuntimeError("down")
    for _ in range(n):
        with pytest.raises(type(dep.error)):
            await breaker.call(dep)


async def trip(breaker: CircuitBreaker) -> None:
    await fail_times(breaker, breaker.config.failure_threshold)
    assert breaker.state is OPEN


async def test_success_passes_result_through() -> None:
    """A CLOSED breaker returns the call's result."""
    breaker, _, seen = make()
    dep = Dependency()
    assert await breaker.call(dep) == "ok"
    assert dep.calls == 1 and breaker.state is CLOSED and seen == []


async def test_opens_after_threshold_consecutive_failures() -> None:
    """threshold-1 failures keep it CLOSED; the threshold-th opens it."""
    breaker, _, seen = make(threshold=3)
    await fail_times(breaker, 2)
    assert breaker.state is CLOSED
    assert breaker.snapshot().consecutive_failures == 2
    await fail_times(breaker, 1)
    assert breaker.state is OPEN
    assert seen == [("dep", CLOSED, OPEN)]


async def test_success_resets_the_consecutive_count() -> None:
    """Failures must be consecutive: a success in between resets the count."""
    breaker, _, _ = make(threshold=3)
    await fail_times(breaker, 2)
    assert await breaker.call(Dependency()) == "ok"
    assert breaker.snapshot().consecutive_failures == 0
    await fail_times(breaker, 2)
    assert breaker.state is CLOSED


async def test_timeouts_count_as_failures() -> None:
    """TimeoutError raised by the call counts, like any exception."""
    breaker, _, _ = make(threshold=2)
    await fail_times(breaker, 2, TimeoutError())
    assert breaker.state is OPEN


async def test_timeout_s_cancels_the_attempt_and_counts() -> None:
    """call(fn, timeout_s=...) cancels a hanging call and counts a failure."""
    breaker, _, _ = make(threshold=1)
    cancelled = asyncio.Event()

    async def hang() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            cancelled.set()

    with pytest.raises(TimeoutError):
        await breaker.call(hang, timeout_s=0.01)
    assert cancelled.is_set()
    assert breaker.state is OPEN


async def test_open_rejects_without_calling_until_timeout() -> None:
    """At reset_timeout - eps it is still OPEN and rejects; at + eps it is HALF_OPEN."""
    breaker, clock, seen = make(reset_s=10.0)
    await trip(breaker)
    dep = Dependency()
    clock.advance(10.0 - EPS)
    assert breaker.state is OPEN
    with pytest.raises(CircuitOpenError) as info:
        await breaker.call(dep)
    assert dep.calls == 0
    assert info.value.state is OPEN and info.value.name == "dep"
    clock.advance(2 * EPS)
    assert breaker.state is HALF_OPEN
    assert seen == [("dep", CLOSED, OPEN), ("dep", OPEN, HALF_OPEN)]
    assert await breaker.call(dep) == "ok"
    assert dep.calls == 1


async def test_rejection_is_immediate() -> None:
    """An OPEN breaker's call finishes without ever suspending."""
    breaker, _, _ = make()
    await trip(breaker)
    coro = breaker.call(Dependency())
    with pytest.raises(CircuitOpenError):
        coro.send(None)  # one step: raises before any await
    coro.close()


async def test_trial_failure_reopens_with_fresh_timeout() -> None:
    """A failed trial re-opens the breaker, and the timeout starts again."""
    breaker, clock, seen = make(reset_s=10.0)
    await trip(breaker)
    clock.advance(10.0)
    await fail_times(breaker, 1)
    assert breaker.state is OPEN
    clock.advance(10.0 - EPS)
    assert breaker.state is OPEN
    clock.advance(EPS)
    assert breaker.state is HALF_OPEN
    assert [t[1:] for t in seen] == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, OPEN),
        (OPEN, HALF_OPEN),
    ]


async def test_closes_after_max_successful_trials() -> None:
    """half_open_max_calls successful trials close it; fewer do not."""
    breaker, clock, seen = make(half_open=3)
    await trip(breaker)
    clock.advance(10.0)
    dep = Dependency()
    for _ in range(2):
        await breaker.call(dep)
        assert breaker.state is HALF_OPEN
    await breaker.call(dep)
    assert breaker.state is CLOSED
    assert seen[-1] == ("dep", HALF_OPEN, CLOSED)
    snap = breaker.snapshot()
    assert snap.consecutive_failures == 0 and snap.opened_at is None
    assert snap.transitions == 3


async def test_hundred_concurrent_calls_in_half_open_admit_exactly_max() -> None:
    """100 concurrent calls in HALF_OPEN: exactly half_open_max_calls run, the rest rejected."""
    breaker, clock, _ = make(half_open=3)
    await trip(breaker)
    clock.advance(10.0)
    gate = asyncio.Event()
    started = 0

    async def trial() -> str:
        nonlocal started
        started += 1
        await gate.wait()
        return "ok"

    tasks = [asyncio.create_task(breaker.call(trial)) for _ in range(100)]
    await asyncio.sleep(0)
    assert started == 3
    assert sum(t.done() for t in tasks) == 97
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results.count("ok") == 3
    assert sum(isinstance(r, CircuitOpenError) for r in results) == 97
    assert started == 3
    assert breaker.state is CLOSED


async def test_cancelled_call_counts_as_nothing_and_frees_its_slot() -> None:
    """Cancelling a trial neither opens nor closes; its slot can be reused."""
    breaker, clock, _ = make(half_open=1, threshold=1)
    await trip(breaker)
    clock.advance(10.0)
    never = asyncio.Event()
    task = asyncio.create_task(breaker.call(never.wait))
    await asyncio.sleep(0)
    assert breaker.snapshot().trials_in_flight == 1
    with pytest.raises(CircuitOpenError):
        await breaker.call(Dependency())  # the only slot is taken
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state is HALF_OPEN
    assert breaker.snapshot().trials_in_flight == 0
    assert await breaker.call(Dependency()) == "ok"
    assert breaker.state is CLOSED


async def test_cancelled_call_in_closed_does_not_count() -> None:
    """threshold cancellations in CLOSED leave it CLOSED with no failures counted."""
    breaker, _, _ = make(threshold=1)
    never = asyncio.Event()
    task = asyncio.create_task(breaker.call(never.wait))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state is CLOSED
    assert breaker.snapshot().consecutive_failures == 0


async def test_late_success_from_closed_era_does_not_close_an_open_breaker() -> None:
    """A call admitted while CLOSED that succeeds after the breaker opened changes nothing."""
    breaker, _, seen = make(threshold=1)
    slow_gate = asyncio.Event()

    async def slow() -> str:
        await slow_gate.wait()
        return "late"

    slow_task = asyncio.create_task(breaker.call(slow))
    await asyncio.sleep(0)
    await fail_times(breaker, 1)
    assert breaker.state is OPEN
    slow_gate.set()
    assert await slow_task == "late"
    assert breaker.state is OPEN
    assert seen == [("dep", CLOSED, OPEN)]


async def test_late_failure_from_closed_era_does_not_reopen_half_open() -> None:
    """A CLOSED-era failure arriving in HALF_OPEN is not a trial failure."""
    breaker, clock, _ = make(threshold=2)
    gate = asyncio.Event()

    async def slow_fail() -> None:
        await gate.wait()
        raise RuntimeError("late")

    late = asyncio.create_task(breaker.call(slow_fail))
    await asyncio.sleep(0)
    await fail_times(breaker, 2)
    clock.advance(10.0)
    assert breaker.state is HALF_OPEN
    gate.set()
    with pytest.raises(RuntimeError):
        await late
    assert breaker.state is HALF_OPEN


async def test_late_trial_success_does_not_count_in_the_next_probe_round() -> None:
    """A trial from an earlier HALF_OPEN that succeeds after a re-open is ignored."""
    breaker, clock, _ = make(half_open=2)
    await trip(breaker)
    clock.advance(10.0)
    gate = asyncio.Event()

    async def slow() -> str:
        await gate.wait()
        return "late"

    late = asyncio.create_task(breaker.call(slow))
    await asyncio.sleep(0)
    await fail_times(breaker, 1)  # the other trial fails: OPEN again
    clock.advance(10.0)
    assert breaker.state is HALF_OPEN
    gate.set()
    assert await late == "late"
    assert breaker.snapshot().trials_in_flight == 0
    await breaker.call(Dependency())
    assert breaker.state is HALF_OPEN, "one trial of this round is not enough"
    await breaker.call(Dependency())
    assert breaker.state is CLOSED


async def test_successful_trial_does_not_free_a_slot() -> None:
    """A probe round admits half_open_max_calls trials in all, not per moment."""
    breaker, clock, _ = make(half_open=2)
    await trip(breaker)
    clock.advance(10.0)
    gate = asyncio.Event()
    held = asyncio.create_task(breaker.call(gate.wait))
    await asyncio.sleep(0)
    await breaker.call(Dependency())
    dep = Dependency()
    with pytest.raises(CircuitOpenError):
        await breaker.call(dep)
    assert dep.calls == 0
    gate.set()
    assert await held is True
    assert breaker.state is CLOSED


async def test_failing_listener_does_not_break_the_breaker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A listener that raises is logged; later listeners and the breaker carry on."""
    breaker, _, seen = make(threshold=1)

    def broken(name: str, old: CircuitState, new: CircuitState) -> None:
        raise ValueError("listener bug")

    after: list[CircuitState] = []
    breaker.add_listener(broken)
    breaker.add_listener(lambda name, old, new: after.append(new))
    await fail_times(breaker, 1)
    assert breaker.state is OPEN
    assert seen == [("dep", CLOSED, OPEN)] and after == [OPEN]
    assert "listener bug" in caplog.text


async def test_hold_open_rejects_regardless_of_time() -> None:
    """hold_open keeps it OPEN past any timeout; releasing goes to HALF_OPEN."""
    breaker, clock, seen = make()
    breaker.hold_open(True)
    assert breaker.state is OPEN and breaker.held_open
    clock.advance(1e6)
    dep = Dependency()
    with pytest.raises(CircuitOpenError):
        await breaker.call(dep)
    assert dep.calls == 0 and breaker.state is OPEN
    breaker.hold_open(False)
    assert breaker.state is HALF_OPEN and not breaker.held_open
    assert [t[1:] for t in seen] == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]


async def test_force_open_trips_with_a_fresh_timeout() -> None:
    """force_open opens a CLOSED breaker; on an OPEN one it restarts the timeout silently."""
    breaker, clock, seen = make(reset_s=10.0)
    breaker.force_open()
    assert breaker.state is OPEN
    clock.advance(9.0)
    breaker.force_open()
    clock.advance(9.0)
    assert breaker.state is OPEN
    clock.advance(1.0)
    assert breaker.state is HALF_OPEN
    assert [t[1:] for t in seen] == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]


async def test_snapshot_reports_state_and_counts() -> None:
    """snapshot() reports state, failures, opened_at and the transition count."""
    breaker, clock, _ = make(threshold=2)
    await fail_times(breaker, 2)
    snap = breaker.snapshot()
    assert snap.state is OPEN
    assert snap.consecutive_failures == 2
    assert snap.opened_at == clock.monotonic()
    assert snap.transitions == 1 and not snap.held_open


def test_permit_api_settles_once() -> None:
    """The sync permit API: a trial permit counts once, whatever is called after."""
    breaker, clock, _ = make(threshold=1, half_open=2)
    permit = breaker.try_acquire()
    assert permit is not None
    permit.failure()
    assert breaker.state is OPEN and breaker.try_acquire() is None
    clock.advance(10.0)
    first, second = breaker.try_acquire(), breaker.try_acquire()
    assert first is not None and second is not None and breaker.try_acquire() is None
    first.success()
    first.failure()  # ignored: already settled
    assert breaker.state is HALF_OPEN
    second.release()
    second.success()  # ignored: already released
    assert breaker.state is HALF_OPEN
    third = breaker.try_acquire()
    assert third is not None
    third.success()
    assert breaker.state is CLOSED


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"reset_timeout_s": -1.0}, "reset_timeout_s"),
        ({"half_open_max_calls": 0}, "half_open_max_calls"),
    ],
)
def test_config_rejects_nonsense(kwargs: dict[str, float], message: str) -> None:
    """BreakerConfig refuses values that make no sense."""
    with pytest.raises(ValueError, match=message):
        BreakerConfig(**kwargs)  # type: ignore[arg-type]
