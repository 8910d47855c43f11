"""The data a scenario's plots need, derived from its history (small, JSON-safe)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from scenarios.checkers.breaker import POLL_FS, observations, state_changes
from scenarios.checkers.health import status_of
from scenarios.checkers.latency import DEFAULT_FS, phase_stats
from scenarios.history import JSON, History, Op

MAX_POINTS = 4000
LATENCY_BUCKETS = 400

LatencyPoint = tuple[float, float, str]
"""(start time s, latency s, outcome)."""
ThroughputBucket = tuple[int, int, int]
"""(second since start, ok completions, other completions)."""
StatePoint = tuple[float, str]
"""(time s, state) at each change."""


@dataclass(frozen=True)
class PlotSeries:
    """Latency points, throughput per second, breaker and health timelines, phase stats."""

    duration: float
    latency: Sequence[LatencyPoint] = ()
    throughput: Sequence[ThroughputBucket] = ()
    breaker: Mapping[str, Sequence[StatePoint]] = field(default_factory=dict)
    health: Sequence[StatePoint] = ()
    phases: Mapping[str, JSON] = field(default_factory=dict)
    """Phase name -> PhaseStats.to_json()."""
    points_total: int = 0
    """Latency points before downsampling."""

    def to_json(self) -> dict[str, JSON]:
        """The series as JSON (results.json)."""
        return {
            "duration": self.duration,
            "latency": [list(p) for p in self.latency],
            "throughput": [list(b) for b in self.throughput],
            "breaker": {k: [list(p) for p in v] for k, v in self.breaker.items()},
            "health": [list(p) for p in self.health],
            "phases": dict(self.phases),
            "points_total": self.points_total,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, JSON]) -> PlotSeries:
        """A series from its JSON form."""
        return cls(
            duration=float(data.get("duration", 0.0)),
            latency=[(float(t), float(lat), str(o)) for t, lat, o in data.get("latency", [])],
            throughput=[(int(s), int(ok), int(bad)) for s, ok, bad in data.get("throughput", [])],
            breaker={
                str(k): [(float(t), str(s)) for t, s in v]
                for k, v in (data.get("breaker") or {}).items()
            },
            health=[(float(t), str(s)) for t, s in data.get("health", [])],
            phases=dict(data.get("phases") or {}),
            points_total=int(data.get("points_total", 0)),
        )


def series_from_history(
    history: History, fs: Sequence[str] = DEFAULT_FS, max_points: int = MAX_POINTS
) -> PlotSeries:
    """Everything the report plots for one run."""
    ops = history.ops_for(*fs)
    points = [(op.start, op.latency, op.outcome) for op in ops if op.latency is not None]
    polls = history.ops_for(*POLL_FS)
    health = sorted(
        (op.end, s)
        for op in history.ops_for("health")
        if op.end is not None and (s := status_of(op.response)) is not None
    )
    return PlotSeries(
        duration=history.duration,
        latency=downsample(
            [(t, lat, o) for t, lat, o in points if lat is not None], history.duration, max_points
        ),
        throughput=throughput(ops),
        breaker={k: state_changes(v) for k, v in observations(polls).items()},
        health=state_changes(health),
        phases={p: s.to_json() for p, s in phase_stats(history, fs).items()},
        points_total=len(points),
    )


def throughput(ops: Sequence[Op]) -> list[ThroughputBucket]:
    """Completions per whole second of the run, ok and not ok, gaps filled with zeros."""
    ok: dict[int, int] = defaultdict(int)
    bad: dict[int, int] = defaultdict(int)
    for op in ops:
        if op.end is None:
            continue
        second = math.floor(op.end)
        (ok if op.outcome == "ok" else bad)[second] += 1
    seconds = set(ok) | set(bad)
    if not seconds:
        return []
    return [(s, ok[s], bad[s]) for s in range(min(seconds), max(seconds) + 1)]


def downsample(
    points: Sequence[LatencyPoint], duration: float, max_points: int = MAX_POINTS
) -> list[LatencyPoint]:
    """At most about `max_points` points that keep the plot's shape: every non-ok point
    (up to half the budget), and per time bucket the fastest, median and slowest ok."""
    ordered = sorted(points)
    if len(ordered) <= max_points:
        return ordered
    not_ok = [p for p in ordered if p[2] != "ok"]
    kept = not_ok[:: max(1, math.ceil(len(not_ok) / (max_points // 2)))]
    buckets: dict[int, list[LatencyPoint]] = defaultdict(list)
    width = (duration or 1.0) / LATENCY_BUCKETS
    for p in ordered:
        if p[2] == "ok":
            buckets[min(int(p[0] / width), LATENCY_BUCKETS - 1)].append(p)
    per_bucket = max(3, (max_points - len(kept)) // max(len(buckets), 1))
    for bucket in buckets.values():
        by_latency = sorted(bucket, key=lambda p: p[1])
        step = max(1, math.ceil(len(by_latency) / per_bucket))
        chosen = set(by_latency[::step])
        chosen.update((by_latency[0], by_latency[len(by_latency) // 2], by_latency[-1]))
        kept.extend(chosen)
    return sorted(kept)
