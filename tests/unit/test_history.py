"""The history model: recording, JSONL round trip, pairing, fault windows."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from scenarios.history import (
    NO_COMPLETION,
    Event,
    FaultWindow,
    History,
    HistoryError,
)
from scenarios.history_recorder import HistoryRecorder


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 0.0

    def monotonic(self) -> float:
        """The time set by the test."""
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


def test_recorder_writes_jsonl_lines_with_increasing_indexes(tmp_path: Path) -> None:
    """Each event is one JSON line, indexes count up, completions reference their invoke."""
    clock = FakeClock()
    path = tmp_path / "history.jsonl"
    with HistoryRecorder(path, clock) as rec:
        inv = rec.invoke(3, "cache_put", "k1", {"value": {"v": 1}}, instance="a")
        clock.advance(0.25)
        done = rec.complete(inv, "ok", None, 204)
    lines = path.read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == [0, 1]
    first, second = (json.loads(line) for line in lines)
    assert first == {
        "index": 0,
        "type": "invoke",
        "process": 3,
        "f": "cache_put",
        "key": "k1",
        "value": {"value": {"v": 1}},
        "time": 0.0,
        "instance": "a",
    }
    assert second["type"] == "ok" and second["ref"] == 0 and second["status"] == 204
    assert second["time"] == 0.25 and second["instance"] == "a"
    assert "error" not in second
    assert done.ref == inv.index


def test_load_round_trips_and_pairs_ops(tmp_path: Path) -> None:
    """What the recorder wrote loads back into paired ops with latency and outcome."""
    clock = FakeClock()
    path = tmp_path / "h.jsonl"
    with HistoryRecorder(path, clock) as rec:
        a = rec.invoke(0, "audit", None, {"event_id": "e1"})
        b = rec.invoke(1, "cache_get", "k", None)
        clock.advance(0.1)
        rec.complete(b, "fail", None, 503, "service unavailable")
        clock.advance(0.2)
        rec.complete(a, "ok", {"event_id": "e1", "path": "queue"}, 202)
        rec.invoke(2, "health", None, None)  # never completes
        recorded = rec.history()
    loaded = History.load(path)
    assert loaded.events == recorded.events
    ops = loaded.ops()
    assert [op.f for op in ops] == ["audit", "cache_get", "health"]
    audit, get, health = ops
    assert audit.outcome == "ok" and audit.response == {"event_id": "e1", "path": "queue"}
    assert audit.latency == pytest.approx(0.3)
    assert get.outcome == "fail" and get.status == 503 and get.error == "service unavailable"
    assert health.outcome == "info" and health.end is None and health.latency is None
    assert health.error == NO_COMPLETION
    assert loaded.ops_for("audit", "health") == (audit, health)
    assert loaded.duration == pytest.approx(0.3)


def test_fault_lines_become_windows(tmp_path: Path) -> None:
    """Fault start/end lines pair by name in order; an unhealed fault has no end."""
    clock = FakeClock()
    path = tmp_path / "h.jsonl"
    with HistoryRecorder(path, clock) as rec:
        clock.advance(1)
        with rec.fault_window("redis-down", "redis", "down", {"proxy": "redis"}):
            clock.advance(2)
        clock.advance(1)
        rec.fault("start", "redis-down", "redis", "down")
        clock.advance(1)
        rec.fault("end", "redis-down", "redis", "down")
        rec.fault("start", "pg-blackhole", "postgres", "timeout")
        clock.advance(4)
    raw = [json.loads(line) for line in path.read_text().splitlines()]
    assert raw[0] == {
        "index": 0,
        "type": "fault",
        "edge": "start",
        "name": "redis-down",
        "target": "redis",
        "kind": "down",
        "time": 1.0,
        "detail": {"proxy": "redis"},
    }
    windows = History.load(path).fault_windows()
    assert windows == (
        FaultWindow("redis-down", "redis", 1.0, 3.0, "down"),
        FaultWindow("redis-down", "redis", 4.0, 5.0, "down"),
        FaultWindow("pg-blackhole", "postgres", 5.0, None, "timeout"),
    )
    assert windows[2].contains(100.0) and not windows[0].contains(3.0)


def test_fault_window_context_records_end_on_error(tmp_path: Path) -> None:
    """The end edge is recorded even when the body raises."""
    clock = FakeClock()
    with HistoryRecorder(tmp_path / "h.jsonl", clock) as rec:
        with pytest.raises(RuntimeError), rec.fault_window("x", "redis", "down"):
            clock.advance(1)
            raise RuntimeError("boom")
        assert rec.history().fault_windows() == (FaultWindow("x", "redis", 0.0, 1.0, "down"),)


def test_torn_last_line_is_ignored_but_corrupt_middle_is_an_error(tmp_path: Path) -> None:
    """A crash mid-write leaves a torn tail (skipped); garbage elsewhere is refused."""
    good = json.dumps(Event(0, 1, "invoke", "health", None, None, 0.5).to_json())
    torn = tmp_path / "torn.jsonl"
    torn.write_text(good + "\n" + '{"index": 1, "type": "ok", "pro')
    history = History.load(torn)
    assert len(history.events) == 1 and history.ops()[0].outcome == "info"
    corrupt = tmp_path / "corrupt.jsonl"
    corrupt.write_text('{"index": 1, "ty\n' + good + "\n")
    with pytest.raises(HistoryError, match=r"corrupt.jsonl:1"):
        History.load(corrupt)


def test_bad_fields_are_reported_with_line_numbers(tmp_path: Path) -> None:
    """Unknown types and wrongly typed fields fail with the line number."""
    path = tmp_path / "h.jsonl"
    path.write_text('{"index": 0, "type": "invoke", "process": "x", "f": "a", "time": 0}\n')
    with pytest.raises(HistoryError, match=r"h.jsonl:1: process must be an integer"):
        History.load(path)
    path.write_text('{"index": 0, "type": "weird", "process": 0, "f": "a", "time": 0}\n')
    with pytest.raises(HistoryError, match="unknown event type"):
        History.load(path)
    path.write_text(
        '{"index": 0, "type": "fault", "edge": "end", "name": "n", '
        '"target": "redis", "kind": "down", "time": 1}\n'
    )
    with pytest.raises(HistoryError, match="never started"):
        History.load(path)


def test_completion_without_ref_pairs_by_process() -> None:
    """Jepsen's rule: a completion with no ref closes its process's oldest open invoke."""
    events = [
        Event(0, 7, "invoke", "cache_get", "a", None, 0.0),
        Event(1, 8, "invoke", "cache_get", "b", None, 0.1),
        Event(2, 8, "ok", "cache_get", "b", {"v": 1}, 0.2, status=200),
        Event(3, 7, "info", "cache_get", "a", None, 1.0, error="timeout"),
    ]
    ops = History(events).ops()
    assert [(op.key, op.outcome, op.end) for op in ops] == [("a", "info", 1.0), ("b", "ok", 0.2)]
    with pytest.raises(HistoryError, match="no open invoke"):
        History([Event(0, 1, "ok", "x", None, None, 0.0)]).ops()


def test_mixed_ref_and_process_pairing() -> None:
    """A ref completion leaves no stale entry behind for the process rule."""
    events = [
        Event(0, 1, "invoke", "cache_get", "a", None, 0.0),
        Event(1, 1, "ok", "cache_get", "a", None, 0.1, status=200, ref=0),
        Event(2, 1, "invoke", "cache_get", "b", None, 0.2),
        Event(3, 1, "fail", "cache_get", "b", None, 0.3, status=500),
    ]
    ops = History(events).ops()
    assert [(op.key, op.outcome, op.status) for op in ops] == [("a", "ok", 200), ("b", "fail", 500)]
    with pytest.raises(HistoryError, match="not an open invoke"):
        History([*events, Event(4, 1, "ok", "cache_get", "a", None, 0.4, ref=0)]).ops()


def test_recorder_refuses_bad_completions(tmp_path: Path) -> None:
    """Completing twice or with a bad type, ending an unstarted fault, writing after close."""
    rec = HistoryRecorder(tmp_path / "h.jsonl", FakeClock())
    inv = rec.invoke(0, "health", None, None)
    with pytest.raises(HistoryError, match="must be ok, fail or info"):
        rec.complete(inv, "invoke", None)  # type: ignore[arg-type]
    rec.complete(inv, "ok", {"status": "HEALTHY"}, 200)
    with pytest.raises(HistoryError, match="not open"):
        rec.complete(inv, "ok", None)
    with pytest.raises(HistoryError, match="never started"):
        rec.fault("end", "redis-down", "redis", "down")
    rec.close()
    with pytest.raises(HistoryError, match="closed"):
        rec.invoke(0, "health", None, None)
    with pytest.raises(FileExistsError):
        HistoryRecorder(tmp_path / "h.jsonl", FakeClock())


async def test_many_tasks_share_one_recorder(tmp_path: Path) -> None:
    """Concurrent asyncio tasks produce unique indexes and every op pairs up."""
    clock = FakeClock()
    path = tmp_path / "h.jsonl"
    rec = HistoryRecorder(path, clock, flush_every=16)

    async def worker(process: int) -> None:
        for i in range(25):
            inv = rec.invoke(process, "cache_get", f"k{i}", None)
            clock.advance(0.001)
            await asyncio.sleep(0)
            rec.complete(inv, "ok" if i % 5 else "info", {"v": i}, 200 if i % 5 else None)

    await asyncio.gather(*(worker(p) for p in range(20)))
    rec.close()
    history = History.load(path)
    assert [e.index for e in history.events] == list(range(1000))
    ops = history.ops()
    assert len(ops) == 500
    assert sum(op.outcome == "info" for op in ops) == 100
    assert all(op.end is not None and op.end > op.start for op in ops)


def test_history_without_events_has_zero_duration() -> None:
    """An empty history is valid: no ops, no windows, duration 0."""
    history = History([])
    assert history.ops() == () and history.fault_windows() == () and history.duration == 0.0
