"""Latency and throughput per phase (baseline / fault / between / recovery).

Percentiles use the nearest-rank method: the p-th percentile of n sorted values is the
value at rank ceil(p/100 * n) (1-based), computed exactly (no float rounding of the
rank), so it is always one of the observed values. Every operation of the chosen `fs`
counts for latency at the time waited, whatever its outcome (a failure after 5 s is a
5 s operation); only ok ones count for throughput. An operation belongs to the phase of
its start.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from scenarios.checkers.base import CheckResult, Truth
from scenarios.checkers.evidence import DEFAULT_MIN_EVIDENCE
from scenarios.checkers.phases import PHASES, Phase, phase_of, phase_spans
from scenarios.history import JSON, History

__all__ = [
    "DEFAULT_FS",
    "LatencyChecker",
    "Percentiles",
    "PhaseStats",
    "PhaseThresholds",
    "percentile",
    "percentiles",
    "phase_of",
    "phase_stats",
]

DEFAULT_FS: tuple[str, ...] = (
    "cache_get",
    "cache_put",
    "cache_delete",
    "beneficio_get",
    "beneficio_put",
    "audit",
)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values; 0 < p <= 100."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    rank = math.ceil(Fraction(str(p)) * len(sorted_values) / 100)
    return sorted_values[max(rank, 1) - 1]


@dataclass(frozen=True)
class Percentiles:
    """Count, nearest-rank p50/p95/p99 and max of a sample (None when empty)."""

    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None

    def to_json(self) -> dict[str, JSON]:
        """The percentiles as JSON."""
        return {
            "count": self.count,
            "p50": self.p50,
            "p95": self.p95,
            "p99": self.p99,
            "max": self.max,
        }


def percentiles(values: Iterable[float]) -> Percentiles:
    """p50, p95, p99 and max of `values` (nearest rank)."""
    ordered = sorted(values)
    if not ordered:
        return Percentiles(0, None, None, None, None)
    return Percentiles(
        len(ordered),
        percentile(ordered, 50),
        percentile(ordered, 95),
        percentile(ordered, 99),
        ordered[-1],
    )


@dataclass(frozen=True)
class PhaseThresholds:
    """Upper bounds on latency (seconds) and a lower bound on ok throughput (ops/s)."""

    p50_s: float | None = None
    p95_s: float | None = None
    p99_s: float | None = None
    max_s: float | None = None
    min_throughput: float | None = None
    p95_over_baseline_s: float | None = None
    """p95 at most this many seconds above the baseline's p95 (what the fault adds, on
    whatever load the machine carries: the same workload before the fault is the
    yardstick)."""
    p99_vs_baseline: float | None = None
    """p99 at most this many times the baseline's p99."""
    min_throughput_vs_baseline: float | None = None
    """ok throughput at least this share of the baseline's."""

    def to_json(self) -> dict[str, JSON]:
        """The thresholds as JSON."""
        return {
            "p50_s": self.p50_s,
            "p95_s": self.p95_s,
            "p99_s": self.p99_s,
            "max_s": self.max_s,
            "min_throughput": self.min_throughput,
            "p95_over_baseline_s": self.p95_over_baseline_s,
            "p99_vs_baseline": self.p99_vs_baseline,
            "min_throughput_vs_baseline": self.min_throughput_vs_baseline,
        }

    @property
    def bounds_latency(self) -> bool:
        """True when any latency bound is set."""
        return any(
            v is not None
            for v in (self.p50_s, self.p95_s, self.p99_s, self.max_s, self.p95_over_baseline_s)
        )


@dataclass(frozen=True)
class PhaseStats:
    """What happened in one phase: operations, latency percentiles (every operation at the
    time waited, failures and unknown outcomes included), ok throughput."""

    phase: Phase
    span_s: float
    ops: int
    ok: int
    latency: Percentiles
    throughput: float | None
    """ok operations per second of the phase's span; None when the span is empty."""

    def to_json(self) -> dict[str, JSON]:
        """The phase's statistics as JSON."""
        return {
            "phase": self.phase,
            "span_s": self.span_s,
            "ops": self.ops,
            "ok": self.ok,
            "latency": self.latency.to_json(),
            "throughput": self.throughput,
        }


def phase_stats(history: History, fs: Sequence[str] = DEFAULT_FS) -> dict[Phase, PhaseStats]:
    """Per-phase statistics of the operations `fs` in `history`."""
    windows = history.fault_windows()
    spans = phase_spans(windows, history.duration)
    counts: dict[Phase, int] = dict.fromkeys(PHASES, 0)
    oks: dict[Phase, int] = dict.fromkeys(PHASES, 0)
    latencies: dict[Phase, list[float]] = {p: [] for p in PHASES}
    for op in history.ops_for(*fs):
        phase = phase_of(op.start, windows)
        counts[phase] += 1
        if op.outcome == "ok":
            oks[phase] += 1
        # every outcome counts at the time waited: a 503 after 5 s is a 5 s operation, and
        # an unknown one (the client gave up) a lower bound: leaving either out would make
        # a target that hangs, then fails, look fast
        if op.latency is not None:
            latencies[phase].append(op.latency)
    return {
        p: PhaseStats(
            p,
            spans[p],
            counts[p],
            oks[p],
            percentiles(latencies[p]),
            oks[p] / spans[p] if spans[p] > 0 else None,
        )
        for p in PHASES
    }


@dataclass(frozen=True)
class LatencyChecker:
    """Fails when a phase's percentile, max or throughput crosses its threshold.

    A phase that did not occur (no time, no operation) is skipped; a phase that occurred
    with latency thresholds but no ok operation fails (nothing answered).
    """

    thresholds: Mapping[str, PhaseThresholds] = field(default_factory=dict)
    fs: tuple[str, ...] = DEFAULT_FS
    min_evidence: int = DEFAULT_MIN_EVIDENCE
    """Operations needed in each phase that has thresholds."""
    name: str = "latency"

    def __post_init__(self) -> None:
        unknown = set(self.thresholds) - set(PHASES)
        if unknown:
            raise ValueError(f"unknown phases {sorted(unknown)}; phases are {PHASES}")

    def check(self, history: History, truth: Truth) -> CheckResult:
        """Check each phase's latency percentiles against its thresholds."""
        stats = phase_stats(history, self.fs)
        by_name: dict[str, PhaseStats] = {str(p): s for p, s in stats.items()}
        violations: list[str] = []
        skipped: list[str] = []
        for phase, bounds in self.thresholds.items():
            st = by_name[phase]
            if st.span_s <= 0 and st.ops == 0:
                skipped.append(phase)
                continue
            if st.ops < self.min_evidence:
                violations.append(
                    f"insufficient evidence: {st.ops} operations in {phase} phase "
                    f"(minimum {self.min_evidence})"
                )
            violations.extend(_violations(st, bounds))
            violations.extend(_relative(st, bounds, by_name["baseline"]))
        seen = [_brief(s) for s in stats.values() if s.ops]
        if violations:
            summary = "; ".join(violations)
        else:
            summary = "within thresholds: " + (", ".join(seen) if seen else "no operations")
        return CheckResult(
            self.name,
            not violations,
            summary,
            {
                "fs": list(self.fs),
                "phases": {p: s.to_json() for p, s in stats.items()},
                "violations": violations,
                "skipped_phases": skipped,
            },
            {p: b.to_json() for p, b in self.thresholds.items()},
        )


def _relative(st: PhaseStats, bounds: PhaseThresholds, base: PhaseStats) -> list[str]:
    """Bounds against the baseline (the same workload before any fault)."""
    out: list[str] = []
    if bounds.p95_over_baseline_s is not None:
        if base.latency.p95 is None or st.latency.p95 is None:
            out.append(f"{st.phase}: no p95 to compare with the baseline's")
        elif st.latency.p95 > base.latency.p95 + bounds.p95_over_baseline_s:
            out.append(
                f"{st.phase}: p95 {st.latency.p95:.3f}s > baseline {base.latency.p95:.3f}s "
                f"+ {bounds.p95_over_baseline_s:.3f}s"
            )
    if bounds.p99_vs_baseline is not None:
        if base.latency.p99 is None or st.latency.p99 is None:
            out.append(f"{st.phase}: no p99 to compare with the baseline's")
        elif st.latency.p99 > bounds.p99_vs_baseline * base.latency.p99:
            out.append(
                f"{st.phase}: p99 {st.latency.p99:.3f}s > {bounds.p99_vs_baseline:g} x "
                f"baseline {base.latency.p99:.3f}s"
            )
    if bounds.min_throughput_vs_baseline is not None:
        rate, ref = st.throughput or 0.0, base.throughput or 0.0
        if ref <= 0 or rate < bounds.min_throughput_vs_baseline * ref:
            out.append(
                f"{st.phase}: throughput {rate:.1f}/s < {bounds.min_throughput_vs_baseline:g} "
                f"x baseline {ref:.1f}/s"
            )
    return out


def _violations(st: PhaseStats, bounds: PhaseThresholds) -> list[str]:
    out: list[str] = []
    if bounds.bounds_latency and st.ok == 0:
        out.append(f"{st.phase}: no successful operation out of {st.ops}")
    lat = st.latency
    for label, value, limit in (
        ("p50", lat.p50, bounds.p50_s),
        ("p95", lat.p95, bounds.p95_s),
        ("p99", lat.p99, bounds.p99_s),
        ("max", lat.max, bounds.max_s),
    ):
        if limit is not None and value is not None and value > limit:
            out.append(f"{st.phase}: {label} {value:.3f}s > {limit:.3f}s")
    if bounds.min_throughput is not None:
        rate = st.throughput or 0.0
        if rate < bounds.min_throughput:
            out.append(f"{st.phase}: throughput {rate:.1f}/s < {bounds.min_throughput:.1f}/s")
    return out


def _brief(st: PhaseStats) -> str:
    p99 = "-" if st.latency.p99 is None else f"{st.latency.p99 * 1000:.1f}ms"
    return f"{st.phase} p99 {p99} ({st.ok}/{st.ops} ok)"
