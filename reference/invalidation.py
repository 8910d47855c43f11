"""Cross-instance L1 invalidation over Redis pub/sub: the message and the subscriber.

A message names the key and its sender (`{"key", "from", "op"}`); receivers ignore their
own. `Subscriber` keeps one subscription to the channel up and tells its owner when it
gets a message, when the subscription is (re)established and when it is lost. Rules:

- no network attempt while the breaker is OPEN: the subscriber waits for the reset
  timeout, and its owner calls `interrupt()` when the breaker opens, which drops the
  current session (even a reconnect inside redis-py would be an attempt);
- every attempt (SUBSCRIBE, PING) takes a breaker permit and is bounded by the op
  timeout; in HALF_OPEN they are trial calls, so an idle instance still recovers;
- an idle subscription is PINGed every `ping_interval_s` (a black hole shows up only as
  a missing PONG); while HALF_OPEN, every `probe_interval_s`;
- failed attempts back off exponentially, from `backoff_initial_s` to `backoff_max_s`;
- behind Sentinel, a subscription left on a node that is no longer the primary the client
  knows of (its other connections learned of a failover) is dropped and made again on
  the new primary, where the other instances now publish; the owner flushes L1 then.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TypeVar

import redis.asyncio as aioredis

from reference.breaker import CircuitBreaker, CircuitState, Permit
from reference.clock import Clock
from reference.errors import describe
from reference.sentinel import off_primary

__all__ = ["Subscriber", "SubscriberTiming", "decode_message", "encode_message"]

T = TypeVar("T")
_log = logging.getLogger(__name__)
_OPEN = CircuitState.OPEN
_HALF_OPEN = CircuitState.HALF_OPEN


@dataclass(frozen=True, slots=True)
class SubscriberTiming:
    """Pace of the invalidation subscriber (real seconds)."""

    ping_interval_s: float = 1.0
    """An idle subscription is PINGed this often; no PONG within the op timeout = lost."""
    probe_interval_s: float = 0.05
    """PING pace while the breaker is HALF_OPEN: the subscriber's pings are trial calls."""
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 2.0
    close_timeout_s: float = 2.0
    """How long closing a subscription (or the owner) may take."""

    def __post_init__(self) -> None:
        for name in ("ping_interval_s", "probe_interval_s", "backoff_initial_s", "close_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be >= backoff_initial_s")


def encode_message(key: str, sender: str, op: str) -> str:
    """The invalidation message for `key` sent by instance `sender` (`op`: set or delete)."""
    return json.dumps({"key": key, "from": sender, "op": op}, separators=(",", ":"))


def decode_message(data: object) -> tuple[str, str] | None:
    """(key, sender) of a message, or None when it is not one of ours."""
    try:
        message = json.loads(data)  # type: ignore[arg-type]
        key, sender = message["key"], message["from"]
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(key, str) or not isinstance(sender, str):
        return None
    return key, sender


class _Lost(Exception):
    """The subscription stopped answering."""


class Subscriber:
    """Keeps a subscription to `channel` up and reports to its owner (see module doc)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        breaker: CircuitBreaker,
        channel: str,
        *,
        op_timeout_s: float,
        timing: SubscriberTiming,
        clock: Clock,
        on_message: Callable[[object], None],
        on_subscribed: Callable[[], None],
        on_lost: Callable[[str], None],
        on_failure: Callable[[], None],
    ) -> None:
        self._redis = redis
        self._breaker = breaker
        self._channel = channel
        self._op_timeout_s = op_timeout_s
        self._timing = timing
        self._clock = clock
        self._on_message = on_message
        self._on_subscribed = on_subscribed
        self._on_lost = on_lost
        self._on_failure = on_failure
        self._runner: asyncio.Task[None] | None = None
        self._session: asyncio.Task[bool] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._closing = False

    def start(self) -> None:
        """Start the subscription task (idempotent; no-op once closed)."""
        if self._runner is None and not self._closing:
            self._runner = asyncio.create_task(self._run(), name=f"subscriber {self._channel}")

    def interrupt(self) -> None:
        """Drop the current session now (the breaker opened); the runner waits it out."""
        session = self._session
        if session is not None and not session.done() and session is not _current_task():
            session.cancel()

    async def aclose(self) -> None:
        """Stop, and wait (bounded) until the subscription is closed."""
        self._closing = True
        runner, self._runner = self._runner, None
        timeout = self._timing.close_timeout_s
        if runner is not None:
            runner.cancel()
            await asyncio.wait((runner,), timeout=timeout)
            if runner.done() and not runner.cancelled():
                runner.exception()  # retrieved (the runner logs its own problems)
        if self._background:
            await asyncio.wait(tuple(self._background), timeout=timeout)

    # -- the runner: one session after another ------------------------------------------

    async def _run(self) -> None:
        timing = self._timing
        backoff = timing.backoff_initial_s
        while True:
            if self._breaker.state is _OPEN:
                await asyncio.sleep(self._open_wait_s())
                continue
            session = asyncio.create_task(self._session_body())
            self._session = session
            try:
                await asyncio.wait((session,))
            except asyncio.CancelledError:
                session.cancel()
                await asyncio.wait((session,), timeout=timing.close_timeout_s)
                raise
            finally:
                self._session = None
            if session.cancelled():
                continue  # interrupted: the breaker opened, wait for it above
            if session.result():
                backoff = timing.backoff_initial_s  # it was up for a while
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, timing.backoff_max_s)

    def _open_wait_s(self) -> float:
        """How long to sleep while OPEN: until the reset timeout is due, within bounds."""
        snap = self._breaker.snapshot()
        ceiling = self._timing.backoff_max_s
        if snap.held_open or snap.opened_at is None:
            return ceiling
        due = snap.opened_at + self._breaker.config.reset_timeout_s - self._clock.monotonic()
        return min(max(due, 0.01), ceiling)

    async def _session_body(self) -> bool:
        """Subscribe and listen until the subscription fails; True if it was up."""
        pubsub = self._redis.pubsub()
        subscribed = False
        reason = "closed"
        try:
            await self._attempt(lambda: self._subscribe(pubsub))
            subscribed = True
            self._on_subscribed()
            await self._listen(pubsub)
        except asyncio.CancelledError:
            reason = "closed" if self._closing else "breaker open"
            raise
        except Exception as exc:
            reason = describe(exc)
            _log.debug("subscriber %s: session ended: %s", self._channel, reason)
        finally:
            if subscribed:
                self._on_lost(reason)
            self._spawn(self._close(pubsub))
        return subscribed

    async def _subscribe(self, pubsub: aioredis.client.PubSub) -> None:
        await pubsub.subscribe(self._channel)
        while True:  # bounded by the attempt's timeout
            message = await pubsub.get_message(timeout=self._op_timeout_s)
            if message is not None and message.get("type") == "subscribe":
                return

    async def _attempt(self, fn: Callable[[], Awaitable[T]]) -> T:
        """One operation under a permit and the op timeout; raises on failure."""
        permit = self._breaker.try_acquire()
        if permit is None:
            raise _Lost("the breaker is open")
        try:
            async with asyncio.timeout(self._op_timeout_s):
                result = await fn()
        except Exception:
            permit.failure()
            self._on_failure()
            raise
        except BaseException:
            permit.release()
            raise
        permit.success()
        return result

    async def _listen(self, pubsub: aioredis.client.PubSub) -> None:
        """Deliver messages; PING when idle (trial calls while HALF_OPEN); end when the
        primary moved (behind Sentinel)."""
        loop = asyncio.get_running_loop()
        op_timeout = self._op_timeout_s
        pending: Permit | None = None
        sent_at = 0.0
        heard_at = loop.time()
        try:
            while True:
                state = self._breaker.state
                if state is _OPEN:
                    return
                if pending is None and off_primary(self._redis, pubsub.connection):
                    raise _Lost("the primary moved")  # not a failure: no permit taken
                interval = (
                    self._timing.probe_interval_s
                    if state is _HALF_OPEN
                    else self._timing.ping_interval_s
                )
                wait = interval
                if pending is not None:
                    wait = min(wait, max(sent_at + op_timeout - loop.time(), 0.001))
                message = await pubsub.get_message(timeout=wait)
                now = loop.time()
                if message is not None:
                    heard_at = now
                    kind = message.get("type")
                    if kind == "message":
                        self._on_message(message.get("data"))
                    elif kind == "pong" and pending is not None:
                        pending.success()
                        pending = None
                    continue
                if pending is not None:
                    if now - sent_at < op_timeout:
                        continue
                    pending.failure()
                    pending = None
                    self._on_failure()
                    raise _Lost(f"no PONG within {op_timeout:g} s")
                if now - heard_at >= interval:
                    permit = self._breaker.try_acquire()
                    if permit is None:
                        heard_at = now
                        continue
                    pending, sent_at = permit, now
                    async with asyncio.timeout(op_timeout):
                        await pubsub.ping()
        except Exception:
            if pending is not None:
                pending.failure()
                pending = None
                self._on_failure()
            raise
        finally:
            if pending is not None:
                pending.release()

    async def _close(self, pubsub: aioredis.client.PubSub) -> None:
        """Close a subscription in its own task: a cancelled session cannot interrupt it."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._timing.close_timeout_s):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _spawn(self, coro: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _current_task() -> asyncio.Task[object] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None
