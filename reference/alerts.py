"""Alerts: the seed's four rules, evaluated periodically, deduplicated, sent to sinks.

Rules read an `AlertSignals` (built by the service each evaluation; `SignalWindow` turns
cumulative counters into "recent" deltas). `AlertEvaluator.evaluate` applies, per rule:

- the condition is true and no firing was sent in the last `cooldown_s` → send "firing"
  (the first time it becomes true, and again every `cooldown_s` while it stays true);
- the condition is true within `cooldown_s` of the last firing → nothing is sent (this
  is the flapping case: a condition that clears and returns inside the cooldown is held
  silently, and is sent when the cooldown elapses if it is still true then);
- the condition is false and a firing was sent since the last "resolved" → send
  "resolved" (exactly once per firing episode; a held, never-sent episode resolves
  silently).

`cooldown_s=0` disables deduplication (a firing every evaluation while true).
Sinks must not block: `LogSink` writes a log record, `WebhookSink` hands the event to a
bounded queue drained by a background task (full queue → dropped and counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, Protocol
from urllib.parse import urlsplit

import httpx

from reference.clock import Clock

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "RULES",
    "AlertEvaluator",
    "AlertEvent",
    "AlertRule",
    "AlertSignals",
    "AlertSink",
    "AlertThresholds",
    "CumulativeCounters",
    "LogSink",
    "Reading",
    "SignalWindow",
    "WebhookSink",
]

Severity = Literal["warning", "critical"]
AlertState = Literal["firing", "resolved"]


@dataclass(frozen=True, slots=True)
class AlertSignals:
    """What the rules look at, built once per evaluation ("recent" = the signal window)."""

    redis_failures_recent: int = 0
    redis_circuit: str = "CLOSED"
    cache_reads_recent: int = 0
    fallback_usage: float = 0.0
    file_backups_recent: int = 0
    journal_backlog: int = 0
    health_status: str = "HEALTHY"


@dataclass(frozen=True, slots=True)
class AlertThresholds:
    """Rule thresholds; `min_cache_reads` keeps "1 fallback of 1 read" from firing."""

    redis_failures: int = 5
    fallback_usage: float = 0.5
    min_cache_reads: int = 20


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One notification; `at` is ISO 8601 UTC (`...Z`) from the wall clock."""

    name: str
    severity: Severity
    state: AlertState
    message: str
    value: float | str
    threshold: float | str
    at: str
    instance_id: str

    def to_dict(self) -> dict[str, float | str]:
        return {
            "name": self.name,
            "severity": self.severity,
            "state": self.state,
            "message": self.message,
            "value": self.value,
            "threshold": self.threshold,
            "at": self.at,
            "instance_id": self.instance_id,
        }


@dataclass(frozen=True, slots=True)
class Reading:
    """A rule's verdict on one `AlertSignals`."""

    active: bool
    value: float | str
    threshold: float | str
    message: str


@dataclass(frozen=True, slots=True)
class AlertRule:
    """A named condition over the signals."""

    name: str
    severity: Severity
    check: Callable[[AlertSignals, AlertThresholds], Reading]


def _redis_failures(s: AlertSignals, t: AlertThresholds) -> Reading:
    n, circuit = s.redis_failures_recent, s.redis_circuit.upper()
    return Reading(
        active=n >= t.redis_failures or circuit == "OPEN",
        value=n,
        threshold=t.redis_failures,
        message=f"{n} recent Redis failures (threshold {t.redis_failures}), circuit {circuit}",
    )


def _fallback_usage(s: AlertSignals, t: AlertThresholds) -> Reading:
    reads = s.cache_reads_recent
    return Reading(
        active=reads >= t.min_cache_reads and s.fallback_usage > t.fallback_usage,
        value=s.fallback_usage,
        threshold=t.fallback_usage,
        message=(
            f"cache fallback usage {s.fallback_usage:.1%} of {reads} recent reads "
            f"(threshold {t.fallback_usage:.1%}, minimum {t.min_cache_reads} reads)"
        ),
    )


def _file_backup(s: AlertSignals, t: AlertThresholds) -> Reading:
    written, backlog = s.file_backups_recent, s.journal_backlog
    return Reading(
        active=written > 0 or backlog > 0,
        value=max(written, backlog),
        threshold=0,
        message=f"{written} audit events recently written to the file journal, "
        f"{backlog} pending replay",
    )


def _unhealthy(s: AlertSignals, t: AlertThresholds) -> Reading:
    status = s.health_status.upper()
    return Reading(
        active=status == "UNHEALTHY",
        value=status,
        threshold="UNHEALTHY",
        message=f"overall health is {status}",
    )


RULES: tuple[AlertRule, ...] = (
    AlertRule("REDIS_MULTIPLE_FAILURES", "warning", _redis_failures),
    AlertRule("HIGH_CACHE_FALLBACK_USAGE", "warning", _fallback_usage),
    AlertRule("AUDITORIA_FILE_BACKUP_ACTIVE", "critical", _file_backup),
    AlertRule("SYSTEM_UNHEALTHY", "critical", _unhealthy),
)
"""The seed's rules, in the seed's order."""


# -- signals from cumulative counters ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class CumulativeCounters:
    """Monotonic totals since start; `SignalWindow` turns them into recent deltas."""

    redis_failures: int = 0
    cache_reads: int = 0
    cache_fallbacks: int = 0
    file_backups: int = 0

    @classmethod
    def from_registry(cls, registry: CollectorRegistry) -> CumulativeCounters:
        """Read the totals `reference.metrics.ResilienceMetrics` publishes on `registry`."""

        def total(name: str, **labels: str) -> int:
            value = registry.get_sample_value(f"stormproof_{name}_total", labels or None)
            return int(value or 0)

        hits = total("cache_hits", tier="l1") + total("cache_hits", tier="l2")
        stale = total("cache_stale_served")
        return cls(
            redis_failures=total("redis_failures"),
            cache_reads=hits + total("cache_misses") + stale,
            cache_fallbacks=stale + total("cache_loader_fallbacks"),
            file_backups=total("audit_events", path="file"),
        )

    def minus(self, base: CumulativeCounters) -> CumulativeCounters:
        """The increase since `base` (never negative, should a counter be reset)."""
        return CumulativeCounters(
            redis_failures=max(0, self.redis_failures - base.redis_failures),
            cache_reads=max(0, self.cache_reads - base.cache_reads),
            cache_fallbacks=max(0, self.cache_fallbacks - base.cache_fallbacks),
            file_backups=max(0, self.file_backups - base.file_backups),
        )


class SignalWindow:
    """Builds `AlertSignals` whose "recent" counts cover the last `window_s` seconds.

    The baseline is the newest observation at least `window_s` old (the construction-time
    `initial` until there is one); `window_s=0` means "since the previous observation".
    """

    def __init__(
        self,
        clock: Clock,
        window_s: float,
        initial: CumulativeCounters = CumulativeCounters(),
        *,
        max_samples: int = 4096,
    ) -> None:
        if window_s < 0:
            raise ValueError("window_s must be >= 0")
        self._clock = clock
        self._window_s = window_s
        self._samples: deque[tuple[float, CumulativeCounters]] = deque(maxlen=max_samples)
        self._samples.append((clock.monotonic(), initial))

    def observe(
        self,
        counters: CumulativeCounters,
        *,
        redis_circuit: str,
        journal_backlog: int,
        health_status: str,
    ) -> AlertSignals:
        now = self._clock.monotonic()
        cutoff = now - self._window_s
        while len(self._samples) >= 2 and self._samples[1][0] <= cutoff:
            self._samples.popleft()
        recent = counters.minus(self._samples[0][1])
        self._samples.append((now, counters))
        reads = recent.cache_reads
        return AlertSignals(
            redis_failures_recent=recent.redis_failures,
            redis_circuit=redis_circuit,
            cache_reads_recent=reads,
            fallback_usage=recent.cache_fallbacks / reads if reads > 0 else 0.0,
            file_backups_recent=recent.file_backups,
            journal_backlog=journal_backlog,
            health_status=health_status,
        )


# -- sinks ------------------------------------------------------------------------------


class AlertSink(Protocol):
    """Where events go; `send` must return at once (no I/O wait) and should not raise."""

    def send(self, event: AlertEvent) -> None: ...


class LogSink:
    """Writes each event as one log record (the event's fields under `extra["alert"]`)."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def send(self, event: AlertEvent) -> None:
        if event.state == "resolved":
            level = logging.INFO
        else:
            level = logging.ERROR if event.severity == "critical" else logging.WARNING
        self._logger.log(
            level,
            "alert %s %s [%s]: %s",
            event.state,
            event.name,
            event.severity,
            event.message,
            extra={"alert": event.to_dict()},
        )


class WebhookSink:
    """POSTs each event as JSON from a background task fed by a bounded queue.

    `send` never waits: a full queue (or a closed sink) drops the event and counts it.
    Each POST is bounded by `timeout_s`; a non-2xx answer or an error counts as failed.
    Events sent before `start()` wait in the queue. Call `send` from the event loop's
    thread (the queue is an `asyncio.Queue`).
    """

    def __init__(
        self,
        url: str,
        timeout_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        queue_size: int = 100,
        logger: logging.Logger | None = None,
    ) -> None:
        if timeout_s <= 0 or queue_size < 1:
            raise ValueError("timeout_s must be > 0 and queue_size >= 1")
        self._url = url
        self._timeout_s = timeout_s
        self._transport = transport
        self._queue: asyncio.Queue[AlertEvent] = asyncio.Queue(maxsize=queue_size)
        self._log = logger or logging.getLogger(__name__)
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._dropping = False
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Events queued and not yet attempted."""
        return self._queue.qsize()

    def send(self, event: AlertEvent) -> None:
        if self._closed:
            self.dropped += 1
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            if not self._dropping:
                self._log.warning("alert webhook queue full: dropping alerts")
            self._dropping = True
        else:
            self._dropping = False

    async def start(self) -> None:
        """Start the background sender (idempotent)."""
        if self._task is not None or self._closed:
            return
        self._client = httpx.AsyncClient(transport=self._transport, timeout=self._timeout_s)
        self._task = asyncio.create_task(self._run(), name="alert-webhook")

    async def aclose(self, timeout_s: float | None = None) -> None:
        """Drain the queue for at most `timeout_s` (default: the POST timeout), then stop.

        Events still queued (or cancelled in flight) are counted as dropped.
        """
        self._closed = True
        bound = self._timeout_s if timeout_s is None else timeout_s
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(bound):
                    await self._queue.join()
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()
            self.dropped += 1
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await client.aclose()

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._post(event)
            except asyncio.CancelledError:
                self.dropped += 1
                raise
            finally:
                self._queue.task_done()

    async def _post(self, event: AlertEvent) -> None:
        assert self._client is not None
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await self._client.post(self._url, json=event.to_dict())
        except Exception as exc:  # any failure of the POST: counted, logged, never raised
            self.failed += 1
            self._log.warning(
                "alert webhook %s failed: %s", _public_url(self._url), type(exc).__name__
            )
            return
        if response.is_success:
            self.sent += 1
        else:
            self.failed += 1
            self._log.warning(
                "alert webhook %s answered %d", _public_url(self._url), response.status_code
            )


def _public_url(url: str) -> str:
    """Scheme and host only: webhook URLs often carry their secret in the path or query."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname or ''}/***"
    except ValueError:
        return "<unparseable url>"


# -- evaluator --------------------------------------------------------------------------


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
        wall_clock: Callable[[], float],
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
        self._wall_clock = wall_clock
        self._cooldown_s = cooldown_s
        self._instance_id = instance_id
        self._rules = tuple(rules)
        self._log = logger or logging.getLogger(__name__)
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
            await asyncio.sleep(interval_s)

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
        moment = datetime.fromtimestamp(self._wall_clock(), UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
