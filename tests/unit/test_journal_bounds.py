"""The journal path is bounded (issue 12, item 5).

- A stalled fsync must not let the journal's pending queue grow with traffic: past a byte
  bound, `append` fails at once with JournalWriteError (the caller falls through to 503).
- The journal path has its own breaker: after a few appends that timed out, the next
  events are refused at once instead of each waiting the full timeout.

The stall is a real blocked write in the journal's I/O thread (a gate the test opens).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from pathlib import Path

import pytest

from reference.audit.event import AuditEvent
from reference.audit.journal import Journal, JournalConfig, JournalWriteError
from reference.audit.resilient import AuditConfig, AuditUnavailable, ResilientAudit
from reference.breaker import BreakerConfig, CircuitBreaker
from reference.clock import SYSTEM_CLOCK

PAYLOAD = b"x" * (64 * 1024)


async def test_a_stalled_fsync_bounds_pending_bytes_and_fails_fast(tmp_path: Path) -> None:
    """13 MB of appends whose callers gave up wait behind a stalled write; the next append
    raises JournalWriteError within 0.1 s instead of queueing (and waiting) too."""
    journal = Journal(JournalConfig(tmp_path / "journal"), SYSTEM_CLOCK)
    await journal.open()
    gate = threading.Event()
    real_commit = journal._sync_commit

    def stalled(payloads: list[bytes], rotate_first: bool) -> None:
        gate.wait(30)
        real_commit(payloads, rotate_first)

    journal._sync_commit = stalled  # type: ignore[method-assign]
    try:
        for _ in range(200):
            with contextlib.suppress(TimeoutError, JournalWriteError):
                await asyncio.wait_for(journal.append(PAYLOAD), 0.001)
        started = time.monotonic()
        with pytest.raises(JournalWriteError):
            await asyncio.wait_for(journal.append(PAYLOAD), 2.0)
        assert time.monotonic() - started < 0.1
    finally:
        gate.set()
        await journal.close()


class _HangingJournal:
    """A journal whose appends never finish (a stalled disk); counts the attempts."""

    def __init__(self) -> None:
        self.calls = 0

    async def append(self, payload: bytes) -> None:
        self.calls += 1
        await asyncio.Event().wait()


async def test_the_journal_path_has_its_own_breaker() -> None:
    """Three appends time out (threshold 3); the fourth event is refused at once and the
    journal is not called again until the breaker's reset timeout."""
    breaker = BreakerConfig(failure_threshold=3, reset_timeout_s=30.0, half_open_max_calls=1)
    journal = _HangingJournal()
    audit = ResilientAudit(
        AuditConfig(timeout_s=0.05, queue=False, db=False, file=True),
        redis_breaker=CircuitBreaker("redis", breaker),
        db_breaker=CircuitBreaker("database", breaker),
        journal=journal,  # type: ignore[arg-type]
        journal_breaker=CircuitBreaker("journal", breaker),
    )
    event = AuditEvent.new("t", "a", "e", "1", {})
    for _ in range(3):
        with pytest.raises(AuditUnavailable):
            await audit.record(event)
    started = time.monotonic()
    with pytest.raises(AuditUnavailable) as refused:
        await audit.record(event)
    assert time.monotonic() - started < 0.02
    assert journal.calls == 3
    assert "circuit" in str(refused.value)
