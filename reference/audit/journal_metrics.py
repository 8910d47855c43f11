"""The journal's counting hooks: the protocol, a no-op and plain counters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["JournalCounters", "JournalMetrics", "NullJournalMetrics"]


class JournalMetrics(Protocol):
    """Counting hooks: cheap, never raising, callable from the journal's I/O thread."""

    def records_appended(self, count: int) -> None:
        """`count` records were appended."""

    def fsynced(self, records: int, seconds: float) -> None:
        """One fsync made `records` records durable in `seconds`."""

    def write_failed(self, records: int) -> None:
        """A write or fsync of `records` records failed."""

    def segment_opened(self, sequence: int) -> None:
        """Segment number `sequence` was created."""

    def corrupt_quarantined(self, count: int) -> None:
        """`count` corrupt regions were quarantined."""


class NullJournalMetrics:
    """Metrics that count nothing."""

    def records_appended(self, count: int) -> None:
        """Ignored."""
        pass

    def fsynced(self, records: int, seconds: float) -> None:
        """Ignored."""
        pass

    def write_failed(self, records: int) -> None:
        """Ignored."""
        pass

    def segment_opened(self, sequence: int) -> None:
        """Ignored."""
        pass

    def corrupt_quarantined(self, count: int) -> None:
        """Ignored."""
        pass


@dataclass
class JournalCounters:
    """Plain in-memory counters (tests, probes, and an adapter target for Prometheus)."""

    appended: int = 0
    fsyncs: int = 0
    failed: int = 0
    segments: int = 0
    quarantined: int = 0
    fsync_seconds: float = 0.0

    def records_appended(self, count: int) -> None:
        """Count appended records."""
        self.appended += count

    def fsynced(self, records: int, seconds: float) -> None:
        """Count one fsync, its records and its duration."""
        self.fsyncs += 1
        self.fsync_seconds += seconds

    def write_failed(self, records: int) -> None:
        """Count a failed write."""
        self.failed += records

    def segment_opened(self, sequence: int) -> None:
        """Count an opened segment."""
        self.segments += 1

    def corrupt_quarantined(self, count: int) -> None:
        """Count quarantined regions."""
        self.quarantined += count
