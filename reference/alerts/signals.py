"""Signals: cumulative counters turned into the "recent" counts the rules read.

The service builds an `AlertSignals` each evaluation; `SignalWindow` turns cumulative
counters (handed over by `reference.metrics.ResilienceMetrics.totals`) into deltas.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from reference.alerts.rules import AlertSignals
from reference.clock import Clock
from reference.metrics import CounterTotals

__all__ = ["CumulativeCounters", "SignalWindow"]


@dataclass(frozen=True, slots=True)
class CumulativeCounters:
    """Monotonic totals since start; `SignalWindow` turns them into recent deltas."""

    redis_failures: int = 0
    cache_reads: int = 0
    cache_fallbacks: int = 0
    file_backups: int = 0
    journal_chain_breaks: int = 0

    @classmethod
    def from_totals(cls, totals: CounterTotals) -> CumulativeCounters:
        """The alert counts behind the totals `ResilienceMetrics.totals()` hands over."""
        stale = totals.cache_stale_served
        return cls(
            redis_failures=totals.redis_failures,
            cache_reads=totals.cache_hits_l1 + totals.cache_hits_l2 + totals.cache_misses + stale,
            cache_fallbacks=stale + totals.cache_loader_fallbacks,
            file_backups=totals.audit_file_events,
            journal_chain_breaks=totals.journal_chain_breaks,
        )

    def minus(self, base: CumulativeCounters) -> CumulativeCounters:
        """The increase since `base` (never negative, should a counter be reset)."""
        return CumulativeCounters(
            redis_failures=max(0, self.redis_failures - base.redis_failures),
            cache_reads=max(0, self.cache_reads - base.cache_reads),
            cache_fallbacks=max(0, self.cache_fallbacks - base.cache_fallbacks),
            file_backups=max(0, self.file_backups - base.file_backups),
            journal_chain_breaks=max(0, self.journal_chain_breaks - base.journal_chain_breaks),
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
        audit_queue_unsafe: bool = False,
    ) -> AlertSignals:
        """The signals for this evaluation: `counters`' increase over the window, plus the
        current states."""
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
            audit_queue_unsafe=audit_queue_unsafe,
            journal_chain_breaks_recent=recent.journal_chain_breaks,
        )
