"""The Jepsen-style history of a run: events, paired operations, fault windows, JSONL read.

It is written by `scenarios.history_recorder.HistoryRecorder`, in the format below.

One JSON object per line, in index order. Operation events:

    {"index": 7, "type": "invoke", "process": 2, "f": "audit", "key": null,
     "value": {"event_id": "..."}, "time": 1.25, "instance": "a"}
    {"index": 9, "type": "ok", "process": 2, "f": "audit", "key": null,
     "value": {"event_id": "...", "path": "queue"}, "time": 1.31, "status": 202,
     "instance": "a", "ref": 7}

`type` is invoke | ok | fail | info (info: outcome unknown, e.g. timeout, reset).
`ref` on a completion is the index of its invoke; without it a completion pairs with the
oldest open invoke of its process (Jepsen's rule). Null `status`, `error`, `instance`
and `ref` are omitted. Fault lines mark the edges of a fault window:

    {"index": 3, "type": "fault", "edge": "start", "name": "redis-blackhole",
     "target": "redis", "kind": "timeout", "time": 5.0}

Times are monotonic seconds since the run started. A torn last line (a crash mid-write,
no trailing newline) is ignored on load; any other malformed line is an error.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, TypeAlias, cast

JSON: TypeAlias = Any
"""Any JSON-serialisable value (None, bool, int, float, str, list, dict with str keys)."""

EventType = Literal["invoke", "ok", "fail", "info"]
Outcome = Literal["ok", "fail", "info"]
FaultEdge = Literal["start", "end"]

EVENT_TYPES: frozenset[str] = frozenset(("invoke", "ok", "fail", "info"))
OUTCOMES: frozenset[str] = frozenset(("ok", "fail", "info"))
FAULT_EDGES: frozenset[str] = frozenset(("start", "end"))
NO_COMPLETION = "no completion recorded"


class HistoryError(ValueError):
    """A history that cannot be read or an event that breaks the model."""


@dataclass(frozen=True)
class Event:
    """One line of the history: an invoke or its completion."""

    index: int
    process: int
    type: EventType
    f: str
    key: str | None
    value: JSON
    time: float
    status: int | None = None
    error: str | None = None
    instance: str | None = None
    ref: int | None = None
    """On a completion: the index of the invoke it completes."""

    def to_json(self) -> dict[str, JSON]:
        """The event's JSONL line (null fields omitted)."""
        line: dict[str, JSON] = {
            "index": self.index,
            "type": self.type,
            "process": self.process,
            "f": self.f,
            "key": self.key,
            "value": self.value,
            "time": self.time,
        }
        for name in ("status", "error", "instance", "ref"):
            if (value := getattr(self, name)) is not None:
                line[name] = value
        return line

    @classmethod
    def from_json(cls, line: Mapping[str, JSON]) -> Event:
        """An event from its JSONL line; HistoryError when malformed."""
        kind = line.get("type")
        if kind not in EVENT_TYPES:
            raise HistoryError(f"unknown event type {kind!r}")
        return cls(
            index=_int(line, "index"),
            process=_int(line, "process"),
            type=cast(EventType, kind),
            f=_str(line, "f"),
            key=_opt_str(line, "key"),
            value=line.get("value"),
            time=_float(line, "time"),
            status=_opt_int(line, "status"),
            error=_opt_str(line, "error"),
            instance=_opt_str(line, "instance"),
            ref=_opt_int(line, "ref"),
        )


@dataclass(frozen=True)
class FaultEvent:
    """One edge (start or end) of a fault, as recorded."""

    index: int
    edge: FaultEdge
    name: str
    target: str
    kind: str
    time: float
    detail: Mapping[str, JSON] = field(default_factory=dict)

    def to_json(self) -> dict[str, JSON]:
        """The fault edge's JSONL line."""
        line: dict[str, JSON] = {
            "index": self.index,
            "type": "fault",
            "edge": self.edge,
            "name": self.name,
            "target": self.target,
            "kind": self.kind,
            "time": self.time,
        }
        if self.detail:
            line["detail"] = dict(self.detail)
        return line

    @classmethod
    def from_json(cls, line: Mapping[str, JSON]) -> FaultEvent:
        """A fault edge from its JSONL line; HistoryError when malformed."""
        edge = line.get("edge")
        if edge not in FAULT_EDGES:
            raise HistoryError(f"fault edge must be start or end, got {edge!r}")
        detail = line.get("detail") or {}
        if not isinstance(detail, dict):
            raise HistoryError("fault detail must be an object")
        return cls(
            index=_int(line, "index"),
            edge=cast(FaultEdge, edge),
            name=_str(line, "name"),
            target=_str(line, "target"),
            kind=_str(line, "kind"),
            time=_float(line, "time"),
            detail=detail,
        )


@dataclass(frozen=True)
class FaultWindow:
    """A fault from injection to healing; `end` is None when it was never healed."""

    name: str
    target: str
    start: float
    end: float | None
    kind: str = ""

    def contains(self, t: float) -> bool:
        """Whether time `t` is inside the window (start inclusive, end exclusive)."""
        return self.start <= t and (self.end is None or t < self.end)

    def to_json(self) -> dict[str, JSON]:
        """The window as JSON (results.json, the report)."""
        return {
            "name": self.name,
            "target": self.target,
            "kind": self.kind,
            "start": self.start,
            "end": self.end,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, JSON]) -> FaultWindow:
        """A window from its JSON form."""
        return cls(
            name=_str(data, "name"),
            target=_str(data, "target"),
            start=_float(data, "start"),
            end=None if data.get("end") is None else _float(data, "end"),
            kind=str(data.get("kind") or ""),
        )


@dataclass(frozen=True)
class Op:
    """An invoke paired with its completion; an unfinished invoke is outcome "info"."""

    index: int
    """Index of the invoke event."""
    process: int
    f: str
    key: str | None
    request: JSON
    response: JSON
    start: float
    end: float | None
    outcome: Outcome
    status: int | None = None
    error: str | None = None
    instance: str | None = None

    @property
    def latency(self) -> float | None:
        """Seconds from invoke to completion; None when it never completed."""
        return None if self.end is None else self.end - self.start


def pair_faults(events: Iterable[FaultEvent]) -> tuple[FaultWindow, ...]:
    """Pair start/end edges by name, in order; a start without an end stays open."""
    open_by_name: dict[str, deque[FaultEvent]] = defaultdict(deque)
    windows: list[tuple[int, FaultWindow]] = []
    for ev in sorted(events, key=lambda e: e.index):
        if ev.edge == "start":
            open_by_name[ev.name].append(ev)
            continue
        if not open_by_name[ev.name]:
            raise HistoryError(f"fault {ev.name!r} ends at index {ev.index} but never started")
        start = open_by_name[ev.name].popleft()
        windows.append((start.index, _window(start, ev.time)))
    for starts in open_by_name.values():
        windows.extend((s.index, _window(s, None)) for s in starts)
    return tuple(w for _, w in sorted(windows, key=lambda iw: iw[0]))


def _window(start: FaultEvent, end: float | None) -> FaultWindow:
    return FaultWindow(start.name, start.target, start.time, end, start.kind)


@dataclass(frozen=True)
class History:
    """A recorded run: operation events and fault windows."""

    events: Sequence[Event]
    faults: Sequence[FaultWindow] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "events", tuple(sorted(self.events, key=lambda e: e.index)))
        object.__setattr__(self, "faults", tuple(sorted(self.faults, key=lambda w: w.start)))

    @classmethod
    def load(cls, path: str | Path) -> History:
        """Read a JSONL history; a torn final line is skipped."""
        text = Path(path).read_text(encoding="utf-8")
        lines = text.split("\n")
        events: list[Event] = []
        faults: list[FaultEvent] = []
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            torn_tail = number == len(lines)  # the last piece had no newline after it
            try:
                data = json.loads(raw)
            except json.JSONDecodeError as exc:
                if torn_tail:
                    break
                raise HistoryError(f"{path}:{number}: not JSON: {exc}") from exc
            if not isinstance(data, dict):
                raise HistoryError(f"{path}:{number}: not a JSON object")
            try:
                if data.get("type") == "fault":
                    faults.append(FaultEvent.from_json(data))
                else:
                    events.append(Event.from_json(data))
            except HistoryError as exc:
                raise HistoryError(f"{path}:{number}: {exc}") from exc
        return cls(events, pair_faults(faults))

    @cached_property
    def _ops(self) -> tuple[Op, ...]:
        return _pair_ops(self.events)

    def ops(self) -> tuple[Op, ...]:
        """Every operation, in invoke order."""
        return self._ops

    def ops_for(self, *fs: str) -> tuple[Op, ...]:
        """The operations whose `f` is one of `fs`."""
        wanted = set(fs)
        return tuple(op for op in self._ops if op.f in wanted)

    def fault_windows(self) -> tuple[FaultWindow, ...]:
        """Fault windows sorted by start."""
        return tuple(self.faults)

    @property
    def duration(self) -> float:
        """The latest recorded time (times start at 0 with the run)."""
        times = [e.time for e in self.events]
        for w in self.faults:
            times.append(w.start)
            if w.end is not None:
                times.append(w.end)
        return max(times, default=0.0)


def _pair_ops(events: Sequence[Event]) -> tuple[Op, ...]:
    open_invokes: dict[int, Event] = {}
    by_process: dict[int, deque[int]] = defaultdict(deque)
    ops: dict[int, Op] = {}
    for ev in events:
        if ev.type == "invoke":
            if ev.index in open_invokes or ev.index in ops:
                raise HistoryError(f"duplicate event index {ev.index}")
            open_invokes[ev.index] = ev
            by_process[ev.process].append(ev.index)
            continue
        invoke = _match(ev, open_invokes, by_process)
        ops[invoke.index] = Op(
            index=invoke.index,
            process=invoke.process,
            f=invoke.f,
            key=invoke.key,
            request=invoke.value,
            response=ev.value,
            start=invoke.time,
            end=ev.time,
            outcome=ev.type,
            status=ev.status,
            error=ev.error,
            instance=invoke.instance if invoke.instance is not None else ev.instance,
        )
    for invoke in open_invokes.values():
        ops[invoke.index] = Op(
            index=invoke.index,
            process=invoke.process,
            f=invoke.f,
            key=invoke.key,
            request=invoke.value,
            response=None,
            start=invoke.time,
            end=None,
            outcome="info",
            error=NO_COMPLETION,
            instance=invoke.instance,
        )
    return tuple(ops[i] for i in sorted(ops))


def _match(ev: Event, open_invokes: dict[int, Event], by_process: dict[int, deque[int]]) -> Event:
    if ev.ref is not None:
        invoke = open_invokes.pop(ev.ref, None)
        if invoke is None:
            raise HistoryError(f"event {ev.index} completes {ev.ref}, which is not an open invoke")
        return invoke  # its stale entry in by_process is skipped below
    pending = by_process[ev.process]
    while pending and pending[0] not in open_invokes:
        pending.popleft()
    if not pending:
        raise HistoryError(f"event {ev.index}: process {ev.process} has no open invoke")
    return open_invokes.pop(pending.popleft())


def _int(data: Mapping[str, JSON], name: str) -> int:
    value = data.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise HistoryError(f"{name} must be an integer, got {value!r}")
    return value


def _opt_int(data: Mapping[str, JSON], name: str) -> int | None:
    return None if data.get(name) is None else _int(data, name)


def _float(data: Mapping[str, JSON], name: str) -> float:
    value = data.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise HistoryError(f"{name} must be a number, got {value!r}")
    return float(value)


def _str(data: Mapping[str, JSON], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise HistoryError(f"{name} must be a string, got {value!r}")
    return value


def _opt_str(data: Mapping[str, JSON], name: str) -> str | None:
    return None if data.get(name) is None else _str(data, name)
