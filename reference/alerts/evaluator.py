"""The evaluator: applies every rule periodically, deduplicated with a cooldown.

`AlertEvaluator.evaluate` applies, per rule:

- the condition is true and no firing was sent in the last `cooldown_s` → send "firing"
  (the first time it becomes true, and again every `cooldown_s` while it stays true);
- the condition is true within `cooldown_s` of the last firing → nothing is sent (this
  is the flapping case: a condition that clears and returns inside the cooldown is held
  silently, and is sent when the cooldown elapses if it is still true then);
- the condition is false and a firing was sent since the last "resolved" → send
  "resolved" (exactly once per firing episode; a held, never-sent episode resolves
  silently).

`cooldown_s=0` disables deduplication (a firing every evaluation while true).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from reference.alerts.rules import (
    RULES,
    AlertEvent,
    AlertRule,
    AlertSignals,
    AlertState,
    AlertThresholds,
    Reading,
)
from reference.alerts.sinks import AlertSink
from reference.clock import Clock

__all__ = ["AlertEvaluator"]


@dataclass(slots=True)
class _RuleState:
    active: bool = False
    last_fired_at: float | None = None
    unresolved: bool = False
    since: str = ""


class AlertEvaluator:
    """Applies the rules to each `AlertSignals` and sends what changed (see module doc)."""

    def __init__(
        self,
        thresholds: AlertThresholds,
        sinks: Sequence[AlertSink],
        clock: Clock,
        cooldown_s: float,
        instance_id: str,
        *,
        rules: Sequence[AlertRule] = RULES,
        logger: logging.Logger | None = None,
    ) -> None:
        if cooldown_s < 0:
            raise ValueError("cooldown_s must be >= 0")
        self._thresholds = thresholds
        self._sinks = tuple(sinks)
        self._clock = clock
        self._cooldown_s = cooldown_s
        self._instance_id = instance_id
        self._rules = tuple(rules)
        self._log = logger or logging.getLogger("reference.alerts")
        self._states = {rule.name: _RuleState() for rule in self._rules}

    @property
    def active(self) -> frozenset[str]:
        """Names of the rules whose condition was true at the last evaluation."""
        return frozenset(name for name, st in self._states.items() if st.active)

    def evaluate(self, signals: AlertSignals) -> list[AlertEvent]:
        """Apply every rule once; send and return the events this evaluation produced."""
        now = self._clock.monotonic()
        events: list[AlertEvent] = []
        for rule in self._rules:
            reading = rule.check(signals, self._thresholds)
            st = self._states[rule.name]
            if reading.active:
                if st.last_fired_at is None or now - st.last_fired_at >= self._cooldown_s:
                    at = self._now_iso()
                    message = reading.message
                    if st.unresolved:
                        message = f"{message} (still firing since {st.since})"
                    else:
                        st.since = at
                    events.append(self._event(rule, "firing", reading, message, at))
                    st.last_fired_at, st.unresolved = now, True
            elif st.unresolved and rule.hold is not None and rule.hold(signals):
                continue  # still the same outage: neither re-fired nor resolved
            elif st.unresolved:
                message = f"resolved: {reading.message}"
                events.append(self._event(rule, "resolved", reading, message, self._now_iso()))
                st.unresolved = False
            st.active = reading.active
        for event in events:
            self._dispatch(event)
        return events

    async def run_forever(
        self,
        signal_source: Callable[[], Awaitable[AlertSignals] | AlertSignals],
        interval_s: float,
        *,
        source_timeout_s: float | None = None,
    ) -> None:
        """Evaluate every `interval_s` until cancelled; a failing or slow source is logged
        and skipped (an awaitable source is bounded by `source_timeout_s`, default
        `interval_s`)."""
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        bound = interval_s if source_timeout_s is None else source_timeout_s
        while True:
            try:
                async with asyncio.timeout(bound):
                    got = signal_source()
                    signals = got if isinstance(got, AlertSignals) else await got
                self.evaluate(signals)
            except TimeoutError:
                self._log.warning("alert signals not ready within %.3g s; skipped", bound)
            except Exception:
                self._log.exception("alert evaluation failed")
            await self._clock.sleep(interval_s)

    def _event(
        self, rule: AlertRule, state: AlertState, reading: Reading, message: str, at: str
    ) -> AlertEvent:
        return AlertEvent(
            name=rule.name,
            severity=rule.severity,
            state=state,
            message=message,
            value=reading.value,
            threshold=reading.threshold,
            at=at,
            instance_id=self._instance_id,
        )

    def _dispatch(self, event: AlertEvent) -> None:
        for sink in self._sinks:
            try:
                sink.send(event)
            except Exception:
                self._log.exception("alert sink %s failed", type(sink).__name__)

    def _now_iso(self) -> str:
        moment = datetime.fromtimestamp(self._clock.now(), UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
