"""The circuit breaker checked against a small independent model (Hypothesis state machine).

Real asyncio calls run on an event loop owned by the machine; each call awaits a future
the machine resolves (success, failure, timeout) or cancels later, so many calls can be in
flight across state changes. After every step the breaker's state, failure count, trial
slots and transition log must equal the model's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from reference.breaker import BreakerConfig, CircuitBreaker, CircuitOpenError, CircuitState
from reference.clock import FakeClock

RESET_S = 10.0
EPS = 1e-6


@dataclass(frozen=True)
class Ticket:
    """The model's record of an admitted call: when (epoch) and as what (trial or not)."""

    epoch: int
    trial: bool


@dataclass
class Model:
    """The specification, written as plainly as possible."""

    threshold: int
    max_trials: int
    state: CircuitState = CircuitState.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    held: bool = False
    epoch: int = 0
    trials_running: int = 0
    trials_ok: int = 0
    log: list[tuple[CircuitState, CircuitState]] = field(default_factory=list)

    def go(self, new: CircuitState, now: float) -> None:
        self.log.append((self.state, new))
        self.state, self.epoch = new, self.epoch + 1
        self.trials_running = self.trials_ok = 0
        if new is CircuitState.OPEN:
            self.opened_at = now
        if new is CircuitState.CLOSED:
            self.failures = 0

    def observe(self, now: float) -> CircuitState:
        waited = now - self.opened_at
        if self.state is CircuitState.OPEN and not self.held and waited >= RESET_S:
            self.go(CircuitState.HALF_OPEN, now)
        return self.state

    def admit(self, now: float) -> Ticket | None:
        state = self.observe(now)
        if state is CircuitState.CLOSED:
            return Ticket(self.epoch, trial=False)
        if (
            state is CircuitState.HALF_OPEN
            and self.trials_running + self.trials_ok < self.max_trials
        ):
            self.trials_running += 1
            return Ticket(self.epoch, trial=True)
        return None

    def finish(self, ticket: Ticket, outcome: str, now: float) -> None:
        if ticket.epoch != self.epoch:
            return  # admitted under an earlier state: its outcome no longer counts
        if ticket.trial:
            self.trials_running -= 1
        if outcome == "cancel":
            return
        if outcome == "ok":
            self.failures = 0
            if ticket.trial:
                self.trials_ok += 1
                if self.trials_ok == self.max_trials:
                    self.go(CircuitState.CLOSED, now)
            return
        self.failures += 1
        if ticket.trial or self.failures >= self.threshold:
            self.go(CircuitState.OPEN, now)

    def force_open(self, now: float) -> None:
        if self.state is CircuitState.OPEN:
            self.opened_at = now
        else:
            self.go(CircuitState.OPEN, now)

    def hold(self, flag: bool, now: float) -> None:
        if flag:
            self.held = True
            if self.state is not CircuitState.OPEN:
                self.go(CircuitState.OPEN, now)
        elif self.held:
            self.held = False
            self.go(CircuitState.HALF_OPEN, now)


@dataclass
class InFlight:
    task: asyncio.Task[int]
    gate: asyncio.Future[int]
    ticket: Ticket
    value: int


class BreakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock(0.0)
        self.started = 0
        self.next_value = 0
        self.in_flight: list[InFlight] = []
        self.tasks: list[asyncio.Task[int]] = []
        self.seen: list[tuple[CircuitState, CircuitState]] = []
        self.setup(threshold=2, max_trials=2)

    def setup(self, threshold: int, max_trials: int) -> None:
        self.model = Model(threshold, max_trials)
        self.breaker = CircuitBreaker(
            "m", BreakerConfig(threshold, RESET_S, max_trials), self.clock
        )
        self.seen = []
        self.breaker.add_listener(lambda _name, old, new: self.seen.append((old, new)))

    @initialize(threshold=st.integers(1, 4), max_trials=st.integers(1, 3))
    def configure(self, threshold: int, max_trials: int) -> None:
        self.setup(threshold, max_trials)

    def settle(self) -> None:
        for _ in range(3):
            self.loop.run_until_complete(asyncio.sleep(0))

    async def held_call(self, gate: asyncio.Future[int]) -> int:
        self.started += 1
        return await gate

    def launch(self, timeout_s: float | None) -> list[tuple[asyncio.Task[int], Ticket | None]]:
        gate: asyncio.Future[int] = self.loop.create_future()
        coro = self.breaker.call(lambda: self.held_call(gate), timeout_s=timeout_s)
        task = self.loop.create_task(coro)
        self.tasks.append(task)
        ticket = self.model.admit(self.clock.monotonic())
        self.next_value += 1
        if ticket is not None:
            self.in_flight.append(InFlight(task, gate, ticket, self.next_value))
        return [(task, ticket)]

    @rule(n=st.integers(1, 6))
    def start_calls(self, n: int) -> None:
        """n concurrent calls: the admitted ones start and wait; the rest are rejected."""
        before = self.started
        launched = [pair for _ in range(n) for pair in self.launch(None)]
        self.settle()
        admitted = sum(ticket is not None for _, ticket in launched)
        assert self.started - before == admitted, "a rejected call must not run fn"
        for task, ticket in launched:
            if ticket is None:
                assert task.done() and isinstance(task.exception(), CircuitOpenError)
            else:
                assert not task.done()

    @rule()
    def call_that_times_out(self) -> None:
        """call(fn, timeout_s=0): a real asyncio timeout inside the breaker counts as failure."""
        [(task, ticket)] = self.launch(timeout_s=0.0)
        self.settle()
        assert task.done()
        if ticket is None:
            assert isinstance(task.exception(), CircuitOpenError)
            return
        assert isinstance(task.exception(), TimeoutError)
        self.in_flight = [f for f in self.in_flight if f.task is not task]
        self.model.finish(ticket, "fail", self.clock.monotonic())

    def take(self, index: int) -> InFlight:
        return self.in_flight.pop(index % len(self.in_flight))

    @precondition(lambda self: bool(self.in_flight))
    @rule(index=st.integers(0, 99), outcome=st.sampled_from(["ok", "ok", "ok", "fail", "timeout"]))
    def finish_call(self, index: int, outcome: str) -> None:
        """Resolve one call in flight: success, failure or TimeoutError."""
        call = self.take(index)
        if outcome == "ok":
            call.gate.set_result(call.value)
        else:
            call.gate.set_exception(RuntimeError() if outcome == "fail" else TimeoutError())
        self.settle()
        assert call.task.done()
        if outcome == "ok":
            assert call.task.result() == call.value
        else:
            expected = RuntimeError if outcome == "fail" else TimeoutError
            assert type(call.task.exception()) is expected
        self.model.finish(call.ticket, "ok" if outcome == "ok" else "fail", self.clock.monotonic())

    @precondition(lambda self: bool(self.in_flight))
    @rule(index=st.integers(0, 99))
    def cancel_call(self, index: int) -> None:
        """Cancel one call in flight: it re-raises CancelledError and counts as nothing."""
        call = self.take(index)
        call.task.cancel()
        self.settle()
        assert call.task.cancelled()
        self.model.finish(call.ticket, "cancel", self.clock.monotonic())

    @rule(dt=st.sampled_from([EPS, 1.0, RESET_S - EPS, RESET_S, RESET_S + EPS, 3 * RESET_S]))
    def advance(self, dt: float) -> None:
        self.clock.advance(dt)

    @rule()
    def force_open(self) -> None:
        self.breaker.force_open()
        self.model.force_open(self.clock.monotonic())

    @rule(flag=st.booleans())
    def hold_open(self, flag: bool) -> None:
        self.breaker.hold_open(flag)
        self.model.hold(flag, self.clock.monotonic())

    @invariant()
    def agrees_with_model(self) -> None:
        expected = self.model.observe(self.clock.monotonic())
        assert self.breaker.state is expected
        snap = self.breaker.snapshot()
        assert snap.consecutive_failures == self.model.failures
        assert snap.trials_in_flight == self.model.trials_running
        assert snap.held_open == self.model.held
        assert self.seen == self.model.log, "each transition reported exactly once"
        assert snap.transitions == len(self.model.log)

    @invariant()
    def admits_as_the_model_does(self) -> None:
        """Probe admission with the sync permit API, then give the slot back (no outcome)."""
        now = self.clock.monotonic()
        permit, ticket = self.breaker.try_acquire(), self.model.admit(now)
        assert (permit is None) == (ticket is None)
        if permit is not None and ticket is not None:
            permit.release()
            self.model.finish(ticket, "cancel", now)

    def teardown(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.settle()
        self.loop.close()


BreakerMachine.TestCase.settings = settings(max_examples=400, stateful_step_count=40, deadline=None)
TestBreakerAgainstModel = BreakerMachine.TestCase
TestBreakerAgainstModel.__doc__ = "Hypothesis drives real calls; the breaker must match the model."
