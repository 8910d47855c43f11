"""An async circuit breaker for any async dependency (Redis, the database path of the audit).

CLOSED -> OPEN after `failure_threshold` consecutive failures (any `Exception`, timeouts
included; a success resets the count). OPEN rejects at once with `CircuitOpenError` until
`reset_timeout_s` has passed on the injected clock; then HALF_OPEN admits at most
`half_open_max_calls` concurrent trial calls and rejects the rest. A trial failure re-opens
(fresh timeout); `half_open_max_calls` successful trials close. A cancelled call frees its
slot and counts as neither.

Every transition starts a new *generation*. A call's outcome counts only if the breaker is
still in the generation that admitted it, so a late result from an older state (a CLOSED-era
success arriving while OPEN, say) cannot corrupt the current one.

Timeouts must happen *inside* the guarded call to count as failures: use
`call(fn, timeout_s=...)` or make `fn` time out itself. Cancelling `call` from outside (e.g.
`asyncio.wait_for(breaker.call(fn), t)`) is a cancellation, which does not count.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from reference.clock import SYSTEM_CLOCK, Clock

__all__ = [
    "BreakerConfig",
    "BreakerSnapshot",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "Listener",
    "Permit",
]

T = TypeVar("T")
_log = logging.getLogger(__name__)


class CircuitState(StrEnum):
    """The breaker's three states (values as the seed reports them)."""

    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


Listener = Callable[[str, CircuitState, CircuitState], None]
"""Called on every transition with (breaker name, old state, new state)."""

_CLOSED = CircuitState.CLOSED
_OPEN = CircuitState.OPEN
_HALF_OPEN = CircuitState.HALF_OPEN


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Failures that open the breaker, how long it stays open, trials per half-open round."""

    failure_threshold: int = 5
    reset_timeout_s: float = 30.0
    half_open_max_calls: int = 3

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        if self.reset_timeout_s < 0:
            raise ValueError("reset_timeout_s must be >= 0")
        if self.half_open_max_calls < 1:
            raise ValueError("half_open_max_calls must be >= 1")


class CircuitOpenError(Exception):
    """The breaker rejected the call without making it."""

    def __init__(self, name: str, state: CircuitState) -> None:
        super().__init__(f"circuit {name!r} is {state.value}: call rejected")
        self.name = name
        self.state = state


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """A breaker's state and counters at one moment (for reports and tests)."""

    name: str
    state: CircuitState
    consecutive_failures: int
    opened_at: float | None
    """Monotonic time of the last opening (None when never opened or since closed)."""
    transitions: int
    held_open: bool
    trials_in_flight: int


class Permit:
    """The right to make one call; settle it once with `success()`, `failure()` or `release()`.

    In CLOSED one permit per generation is shared by all callers (settling is stateless
    there), so the hot path allocates nothing. A trial permit (HALF_OPEN) is per call and
    settles at most once; later settlements are ignored.
    """

    __slots__ = ("_breaker", "_generation", "_settled", "_trial")

    def __init__(self, breaker: CircuitBreaker, generation: int, trial: bool) -> None:
        self._breaker = breaker
        self._generation = generation
        self._trial = trial
        self._settled = False

    def success(self) -> None:
        """The call succeeded: settle the permit as a success."""
        if self._settle():
            self._breaker._on_success(self._generation, self._trial)

    def failure(self) -> None:
        """The call failed: settle the permit as a failure."""
        if self._settle():
            self._breaker._on_failure(self._generation, self._trial)

    def release(self) -> None:
        """Give the slot back without an outcome (cancellation)."""
        if self._trial and self._settle():
            self._breaker._on_release(self._generation)

    def _settle(self) -> bool:
        """Whether this settlement counts: always for a shared permit, once for a trial."""
        if not self._trial:
            return True
        if self._settled:
            return False
        self._settled = True
        return True


class CircuitBreaker:
    """A named circuit breaker; see the module docstring for the exact semantics."""

    __slots__ = (
        "_clock",
        "_config",
        "_failures",
        "_generation",
        "_held",
        "_listeners",
        "_opened_at",
        "_permit",
        "_state",
        "_transitions",
        "_trial_successes",
        "_trials",
        "name",
    )

    def __init__(self, name: str, config: BreakerConfig, clock: Clock = SYSTEM_CLOCK) -> None:
        self.name = name
        self._config = config
        self._clock = clock
        self._state = _CLOSED
        self._generation = 0
        self._permit = Permit(self, 0, trial=False)
        self._failures = 0
        self._opened_at: float | None = None
        self._trials = 0
        self._trial_successes = 0
        self._held = False
        self._transitions = 0
        self._listeners: list[Listener] = []

    @property
    def config(self) -> BreakerConfig:
        """The breaker's configuration."""
        return self._config

    @property
    def state(self) -> CircuitState:
        """The current state; an OPEN breaker whose timeout has passed becomes HALF_OPEN here."""
        if self._state is _OPEN:
            self._maybe_half_open()
        return self._state

    async def call(self, fn: Callable[[], Awaitable[T]], timeout_s: float | None = None) -> T:
        """Await `fn()` under the breaker, or raise `CircuitOpenError` without calling it.

        With `timeout_s`, the attempt is cancelled after that long and counts as a failure
        (`TimeoutError`).
        """
        if self._state is _CLOSED and timeout_s is None:  # hot path: no allocation
            generation = self._generation
            try:
                result = await fn()
            except Exception:
                self._on_failure(generation, False)
                raise
            if self._failures and generation == self._generation:
                self._failures = 0
            return result
        permit = self.try_acquire()
        if permit is None:
            raise CircuitOpenError(self.name, self._state)
        try:
            if timeout_s is None:
                result = await fn()
            else:
                async with asyncio.timeout(timeout_s):
                    result = await fn()
        except Exception:
            permit.failure()
            raise
        except BaseException:
            permit.release()
            raise
        permit.success()
        return result

    def try_acquire(self) -> Permit | None:
        """A permit for one call, or None when the breaker rejects it (sync, for hot paths).

        The caller must settle the permit: `success()`, `failure()`, or `release()` when the
        call was abandoned (cancelled). Use try/finally.
        """
        state = self._state
        if state is _CLOSED:
            return self._permit
        if state is _OPEN and not self._maybe_half_open():
            return None
        if self._trials + self._trial_successes >= self._config.half_open_max_calls:
            return None
        self._trials += 1
        return Permit(self, self._generation, trial=True)

    def force_open(self) -> None:
        """Trip to OPEN now, with a fresh reset timeout."""
        if self._state is _OPEN:
            self._opened_at = self._clock.monotonic()
        else:
            self._open()

    def hold_open(self, hold: bool = True) -> None:
        """Hold the breaker OPEN (DISABLE_REDIS) until released; release goes to HALF_OPEN."""
        if hold:
            self._held = True
            if self._state is not _OPEN:
                self._open()
        elif self._held:
            self._held = False
            self._transition(_HALF_OPEN)

    @property
    def held_open(self) -> bool:
        """Whether `hold_open()` pinned the breaker OPEN (no trials ever)."""
        return self._held

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(name, old, new)` on every transition; its exceptions are logged."""
        self._listeners.append(listener)

    def snapshot(self) -> BreakerSnapshot:
        """The breaker's state and counters now."""
        return BreakerSnapshot(
            name=self.name,
            state=self.state,
            consecutive_failures=self._failures,
            opened_at=self._opened_at,
            transitions=self._transitions,
            held_open=self._held,
            trials_in_flight=self._trials,
        )

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self._state.value})"

    # -- outcomes (called by permits and the hot path) ---------------------------------

    def _on_success(self, generation: int, trial: bool) -> None:
        if generation != self._generation:
            return
        self._failures = 0
        if trial:
            self._trials -= 1
            self._trial_successes += 1
            if self._trial_successes >= self._config.half_open_max_calls:
                self._transition(_CLOSED)

    def _on_failure(self, generation: int, trial: bool) -> None:
        if generation != self._generation:
            return
        self._failures += 1
        if trial:
            self._trials -= 1
            self._open()
        elif self._failures >= self._config.failure_threshold:
            self._open()

    def _on_release(self, generation: int) -> None:
        if generation == self._generation:
            self._trials -= 1

    # -- transitions ----------------------------------------------------------------------

    def _maybe_half_open(self) -> bool:
        """In OPEN: move to HALF_OPEN when the reset timeout has passed; tell whether it did."""
        opened_at = self._opened_at
        if self._held or opened_at is None:
            return False
        if self._clock.monotonic() - opened_at < self._config.reset_timeout_s:
            return False
        self._transition(_HALF_OPEN)
        return True

    def _open(self) -> None:
        self._opened_at = self._clock.monotonic()
        self._transition(_OPEN)

    def _transition(self, new: CircuitState) -> None:
        old = self._state
        self._state = new
        self._generation += 1
        self._trials = 0
        self._trial_successes = 0
        if new is _CLOSED:
            self._failures = 0
            self._opened_at = None
            self._permit = Permit(self, self._generation, trial=False)
        self._transitions += 1
        for listener in tuple(self._listeners):
            try:
                listener(self.name, old, new)
            except Exception:
                _log.exception("circuit %r: listener %r failed", self.name, listener)
