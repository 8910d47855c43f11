"""The schedule space: which faults a property run may draw, with what parameters.

Every network kind of `scenarios.faults` (down, blackhole, latency, bandwidth, reset_peer,
slicer, limit_data, slow_close, flapping) on Redis and PostgreSQL, each toxic one either
both ways or one-way (`stream`), and the process faults (sigkill, sigstop) on Redis,
PostgreSQL and the target. A `FaultKind` is one entry; `ScheduleSpace.with_kinds` adds
more (the extension point for power-cut and disk faults: give their kind, targets and a
parameter strategy, and they are drawn, shrunk and replayed like the rest).

Shrinking: Hypothesis shrinks lists toward fewer elements, integers toward their lower
bound and `sampled_from` toward its first element. So every choice is drawn with its
simplest value first: fewer faults, shorter durations, *later* starts (the start is drawn
as a distance back from the latest start), one instance, the plainest kind first, the
default direction (both ways) before a one-way stream, the mildest parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from typing import Any

from hypothesis import strategies as st

from scenarios.faults import DISK_KINDS, DISK_TARGETS, POWER_TARGETS, STREAMS, FaultSpec
from scenarios.run.generate.model import MAX_INSTANCES, GeneratedSchedule, separate
from scenarios.run.scenario import ScheduledFault

Params = st.SearchStrategy[dict[str, Any]]
DEPENDENCIES = ("redis", "postgres")
PROCESSES = ("redis", "postgres", "target")
LATENCIES_MS = (100, 200, 300, 400, 500, 750, 1000, 1500, 2000, 3000)
"""Latencies drawn: dense around the per-operation timeouts (150 ms Redis, 500 ms-1 s
PostgreSQL), where a reply arrives late but a commit has already landed."""


def _streamed(**params: st.SearchStrategy[Any]) -> Params:
    """A toxic's parameters plus an optional one-way `stream` (absent: the kind's default)."""
    stream = st.sampled_from((None, *STREAMS))
    return st.fixed_dictionaries({**params, "stream": stream}).map(
        lambda d: {k: v for k, v in d.items() if v is not None}
    )


def _none() -> Params:
    return st.just({})


@dataclass(frozen=True)
class FaultKind:
    """A kind the generator draws: its targets and a strategy for its parameters."""

    kind: str
    targets: tuple[str, ...]
    params: Callable[[], Params] = _none


DEFAULT_KINDS: tuple[FaultKind, ...] = (
    FaultKind("down", DEPENDENCIES),
    FaultKind("blackhole", DEPENDENCIES, lambda: _streamed()),
    FaultKind(
        "reset_peer",
        DEPENDENCIES,
        lambda: _streamed(timeout=st.integers(0, 10).map(lambda n: n * 100)),
    ),
    FaultKind(
        "latency",
        DEPENDENCIES,
        lambda: _streamed(
            latency=st.sampled_from(LATENCIES_MS),
            jitter=st.integers(0, 4).map(lambda n: n * 50),
        ),
    ),
    FaultKind(
        "flapping",
        DEPENDENCIES,
        lambda: st.fixed_dictionaries({"period_s": st.integers(4, 30).map(lambda n: n / 10)}),
    ),
    FaultKind("bandwidth", DEPENDENCIES, lambda: _streamed(rate=st.integers(0, 64))),
    FaultKind(
        "slicer",
        DEPENDENCIES,
        lambda: _streamed(
            average_size=st.integers(1, 64),
            size_variation=st.integers(0, 32),
            delay=st.integers(0, 20).map(lambda n: n * 100),
        ),
    ),
    FaultKind("limit_data", DEPENDENCIES, lambda: _streamed(bytes=st.integers(0, 8192))),
    FaultKind(
        "slow_close",
        DEPENDENCIES,
        lambda: _streamed(delay=st.integers(0, 30).map(lambda n: n * 100)),
    ),
    FaultKind("sigstop", PROCESSES),
    FaultKind("sigkill", PROCESSES),
)


DISK_FAULT_KINDS: tuple[FaultKind, ...] = (
    FaultKind("powercut", POWER_TARGETS),
    *(FaultKind(kind, DISK_TARGETS) for kind in DISK_KINDS),
)
"""Power-cut and disk faults (the local stack's forgetful disks, docs/powercut.md): not in
the default space, since they need FUSE; `ScheduleSpace().with_kinds(*DISK_FAULT_KINDS)`
(or `stormproof property --disk-faults`) adds them."""


@dataclass(frozen=True)
class ScheduleSpace:
    """Bounds of the space: kinds, how many faults, when they start, how long they last."""

    kinds: tuple[FaultKind, ...] = DEFAULT_KINDS
    max_faults: int = 6
    max_instances: int = MAX_INSTANCES
    earliest_start_s: float = 2.0
    latest_start_s: float = 8.0
    min_duration_s: float = 5.0
    max_duration_s: float = 9.0
    gap_s: float = 2.0
    """Two faults on one resource are at least this far apart (longer than a breaker's
    reset timeout, so the second is a second outage and not the same one)."""

    def with_kinds(self, *more: FaultKind) -> ScheduleSpace:
        """This space plus more kinds (e.g. power-cut and disk faults)."""
        return replace(self, kinds=(*self.kinds, *more))

    def only(self, patterns: Sequence[str]) -> ScheduleSpace:
        """This space with only the faults whose name (e.g. "postgres-latency") matches a
        shell-style pattern (e.g. "postgres-*"): a search focused on one dependency.
        ValueError naming a pattern that matches no fault of the space."""

        def matches(kind: FaultKind, target: str) -> bool:
            return any(fnmatchcase(f"{target}-{kind.kind}", p) for p in patterns)

        for pattern in patterns:
            if not any(fnmatchcase(f"{t}-{k.kind}", pattern) for k, t in self.choices):
                raise ValueError(f"fault pattern {pattern!r} matches no fault (e.g. postgres-*)")
        kinds = (
            replace(kind, targets=tuple(t for t in kind.targets if matches(kind, t)))
            for kind in self.kinds
        )
        return replace(self, kinds=tuple(k for k in kinds if k.targets))

    @property
    def choices(self) -> tuple[tuple[FaultKind, str], ...]:
        """Every (kind, target) pair, simplest kind first, then by target."""
        return tuple((kind, target) for kind in self.kinds for target in kind.targets)


def _tenths(seconds: float) -> int:
    return round(seconds * 10)


def faults(space: ScheduleSpace) -> st.SearchStrategy[ScheduledFault]:
    """One scheduled fault of the space (start, duration, kind, target, parameters)."""

    @st.composite
    def draw_fault(draw: st.DrawFn) -> ScheduledFault:
        kind, target = draw(st.sampled_from(space.choices))
        back = draw(st.integers(0, _tenths(space.latest_start_s - space.earliest_start_s)))
        duration = draw(st.integers(_tenths(space.min_duration_s), _tenths(space.max_duration_s)))
        params = draw(kind.params())
        return ScheduledFault(
            at_s=(_tenths(space.latest_start_s) - back) / 10,
            duration_s=duration / 10,
            fault=FaultSpec(kind.kind, target, params).validate(),
        )

    return draw_fault()


def schedules(
    space: ScheduleSpace | None = None, seed: int = 0
) -> st.SearchStrategy[GeneratedSchedule]:
    """Valid generated schedules: 1..max_faults faults, 1..max_instances instances."""
    space = space or ScheduleSpace()
    return st.builds(
        lambda fs, instances: GeneratedSchedule(separate(fs, space.gap_s), instances, seed),
        st.lists(faults(space), min_size=1, max_size=space.max_faults),
        st.integers(1, space.max_instances),
    )
