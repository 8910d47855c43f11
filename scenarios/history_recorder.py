"""The write side of a history: `HistoryRecorder` appends events to a JSONL file.

The format, and the read side (`History.load`), are in `scenarios.history`.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from reference.clock import MonotonicClock
from scenarios.history import (
    FAULT_EDGES,
    JSON,
    OUTCOMES,
    Event,
    FaultEdge,
    FaultEvent,
    History,
    HistoryError,
    Outcome,
    pair_faults,
)


class HistoryRecorder:
    """Appends events to a new JSONL file (it must not exist) with increasing indexes.

    Each call writes its line before returning (no await inside), so any number of
    asyncio tasks in one loop may share a recorder; a lock also makes it thread-safe.
    Lines are flushed every `flush_every` lines and on close. Times are `clock`'s
    monotonic seconds since `origin` (the run's start).
    """

    def __init__(
        self,
        path: str | Path,
        clock: MonotonicClock,
        *,
        origin: float = 0.0,
        flush_every: int = 1,
        keep: bool = True,
    ) -> None:
        if flush_every < 1:
            raise ValueError("flush_every must be >= 1")
        self.path = Path(path)
        self._clock = clock
        self._origin = origin
        self._flush_every = flush_every
        self._keep = keep
        self._lock = threading.Lock()
        self._file: IO[str] | None = self.path.open("x", encoding="utf-8")
        self._next = 0
        self._unflushed = 0
        self._open: set[int] = set()
        self._open_faults: Counter[str] = Counter()
        self._events: list[Event] = []
        self._faults: list[FaultEvent] = []

    def _now(self) -> float:
        """History time: the clock's seconds since `origin`."""
        return self._clock.monotonic() - self._origin

    def invoke(
        self, process: int, f: str, key: str | None, value: JSON, instance: str | None = None
    ) -> Event:
        """Record that `process` is about to call `f`; returns the invoke event."""
        with self._lock:
            ev = Event(self._next, process, "invoke", f, key, value, self._now(), instance=instance)
            self._write(ev.to_json())
            self._open.add(ev.index)
            if self._keep:
                self._events.append(ev)
            return ev

    def complete(
        self,
        invoke_event: Event,
        type: Outcome,
        value: JSON = None,
        status: int | None = None,
        error: str | None = None,
    ) -> Event:
        """Record the outcome (ok / fail / info) of an earlier invoke."""
        if type not in OUTCOMES:
            raise HistoryError(f"completion type must be ok, fail or info, got {type!r}")
        with self._lock:
            if invoke_event.index not in self._open:
                raise HistoryError(f"invoke {invoke_event.index} is not open on this recorder")
            ev = Event(
                self._next,
                invoke_event.process,
                type,
                invoke_event.f,
                invoke_event.key,
                value,
                self._now(),
                status=status,
                error=error,
                instance=invoke_event.instance,
                ref=invoke_event.index,
            )
            self._write(ev.to_json())
            self._open.discard(invoke_event.index)
            if self._keep:
                self._events.append(ev)
            return ev

    def fault(
        self,
        edge: FaultEdge,
        name: str,
        target: str,
        kind: str,
        detail: Mapping[str, JSON] | None = None,
    ) -> FaultEvent:
        """Record the start or end of a fault window; an end needs an open start."""
        if edge not in FAULT_EDGES:
            raise HistoryError(f"fault edge must be start or end, got {edge!r}")
        with self._lock:
            if edge == "end" and not self._open_faults[name]:
                raise HistoryError(f"fault {name!r} ends but never started")
            ev = FaultEvent(self._next, edge, name, target, kind, self._now(), dict(detail or {}))
            self._write(ev.to_json())
            self._open_faults[name] += 1 if edge == "start" else -1
            if self._keep:
                self._faults.append(ev)
            return ev

    @contextmanager
    def fault_window(
        self, name: str, target: str, kind: str, detail: Mapping[str, JSON] | None = None
    ) -> Iterator[FaultEvent]:
        """Record a fault's start on entry and its end on exit, whatever happened."""
        start = self.fault("start", name, target, kind, detail)
        try:
            yield start
        finally:
            self.fault("end", name, target, kind)

    def history(self) -> History:
        """What was recorded so far (needs `keep=True`)."""
        if not self._keep:
            raise HistoryError("this recorder does not keep events; use History.load")
        with self._lock:
            return History(list(self._events), pair_faults(self._faults))

    def close(self) -> None:
        """Flush and close the file (idempotent)."""
        with self._lock:
            if self._file is not None:
                self._file.flush()
                self._file.close()
                self._file = None

    def __enter__(self) -> HistoryRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, line: Mapping[str, JSON]) -> None:
        if self._file is None:
            raise HistoryError("the recorder is closed")
        text = json.dumps(line, separators=(",", ":"), ensure_ascii=False, default=str)
        self._file.write(text + "\n")
        self._next += 1
        self._unflushed += 1
        if self._unflushed >= self._flush_every:
            self._file.flush()
            self._unflushed = 0
