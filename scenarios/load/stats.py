"""Per-phase load statistics from Locust's CSV, the thresholds on them, and their tables.

The locustfile (locustfiles/reference.py) logs every read and every write a second time
into a summary row per phase, Type `PHASE`, Name `[fault] reads` / `[fault] writes`, so
Locust's own CSV carries exact per-phase percentiles. Throughput is requests divided by
the phase's measured duration (from the locustfile's phase log), not Locust's Requests/s,
which Locust divides by the whole test's duration.

Thresholds (all on the reads of the fault phase, against the baseline phase):
- `reads.fault.failures`: no read failed (a 5xx, a timeout, a refused connection);
- `reads.fault.p99`: p99 <= max(p99_factor x baseline p99, baseline p99 + p99_slack_ms)
  (defaults 3 x and 200 ms: a relative bound for slow baselines, an absolute slack so a
  1-ms baseline is not held to 3 ms on a shared machine);
- `reads.fault.rps`: throughput >= min_rps_ratio x baseline (default 0.9). Users run at a
  fixed pace, so a target that keeps up serves the same rate in every phase; a target
  stuck on a dead dependency holds its users and the rate falls.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SUMMARY_TYPE = "PHASE"
PHASES = ("baseline", "fault", "recovery")
KINDS = ("reads", "writes")


@dataclass(frozen=True)
class Thresholds:
    """The read thresholds of the fault phase, relative to the baseline."""

    p99_factor: float = 3.0
    p99_slack_ms: float = 200.0
    min_rps_ratio: float = 0.9

    def p99_bound_ms(self, baseline_p99_ms: float) -> float:
        """The highest fault-phase p99 allowed for this baseline p99."""
        return max(self.p99_factor * baseline_p99_ms, baseline_p99_ms + self.p99_slack_ms)


@dataclass(frozen=True)
class PhaseStats:
    """One phase's reads or writes."""

    phase: str
    kind: str
    requests: int
    failures: int
    duration_s: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None

    @property
    def rps(self) -> float:
        """Requests per second over the phase."""
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0


@dataclass(frozen=True)
class Verdict:
    """One named pass/fail judgement with its evidence."""

    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        """ "PASS name: detail" or "FAIL name: detail"."""
        return f"{'PASS' if self.passed else 'FAIL'} {self.name}: {self.detail}"


@dataclass
class VariantResult:
    """Everything one load run against one variant produced."""

    variant: str
    stats: dict[tuple[str, str], PhaseStats] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)
    run_dir: str = ""
    acknowledged: int = 0

    @property
    def passed(self) -> bool:
        """True when there are verdicts and every one passed."""
        return bool(self.verdicts) and all(v.passed for v in self.verdicts)

    def failed(self) -> list[str]:
        """The names of the failed verdicts."""
        return [v.name for v in self.verdicts if not v.passed]

    def rps_ratio(self, kind: str = "reads") -> float | None:
        """Fault-phase throughput over baseline throughput; None when unknown."""
        base, fault = self.stats.get(("baseline", kind)), self.stats.get(("fault", kind))
        if base is None or fault is None or base.rps <= 0:
            return None
        return fault.rps / base.rps

    def as_json(self) -> dict[str, Any]:
        """The result as JSON (load.json)."""
        return {
            "variant": self.variant,
            "passed": self.passed,
            "run_dir": self.run_dir,
            "acknowledged_events": self.acknowledged,
            "rps_ratio_reads": self.rps_ratio("reads"),
            "stats": [{**asdict(s), "rps": s.rps} for s in self.stats.values()],
            "verdicts": [asdict(v) for v in self.verdicts],
        }


def _number(raw: str | None) -> float | None:
    try:
        return float(raw) if raw not in (None, "", "N/A") else None
    except ValueError:
        return None


def phase_durations(phase_log: dict[str, Any]) -> dict[str, float]:
    """Seconds each measured phase lasted, from the locustfile's phase log."""
    durations = {}
    for phase in phase_log.get("phases", []):
        if phase.get("end_s") is not None:
            durations[str(phase["name"])] = float(phase["end_s"]) - float(phase["start_s"])
    return durations


def read_phase_stats(
    stats_csv: Path, durations: dict[str, float]
) -> dict[tuple[str, str], PhaseStats]:
    """The PHASE summary rows of Locust's `<prefix>_stats.csv`, keyed (phase, kind)."""
    out: dict[tuple[str, str], PhaseStats] = {}
    with stats_csv.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("Type") != SUMMARY_TYPE:
                continue
            name = row.get("Name", "")
            if not name.startswith("[") or "] " not in name:
                continue
            phase, _, kind = name[1:].partition("] ")
            if phase not in PHASES or kind not in KINDS:
                continue
            out[(phase, kind)] = PhaseStats(
                phase=phase,
                kind=kind,
                requests=int(row["Request Count"]),
                failures=int(row["Failure Count"]),
                duration_s=durations.get(phase, 0.0),
                p50_ms=_number(row.get("50%")),
                p95_ms=_number(row.get("95%")),
                p99_ms=_number(row.get("99%")),
            )
    return out


def read_verdicts(
    stats: dict[tuple[str, str], PhaseStats], thresholds: Thresholds
) -> list[Verdict]:
    """The three read thresholds of the fault phase against the baseline."""
    base, fault = stats.get(("baseline", "reads")), stats.get(("fault", "reads"))
    if base is None or base.requests == 0 or fault is None or fault.requests == 0:
        missing = "baseline" if base is None or base.requests == 0 else "fault"
        return [Verdict("reads.measured", False, f"no reads measured in the {missing} phase")]
    verdicts = [
        Verdict(
            "reads.fault.failures",
            fault.failures == 0,
            f"{fault.failures} of {fault.requests} reads failed during the fault (must be 0)",
        )
    ]
    if base.p99_ms is None or fault.p99_ms is None:
        verdicts.append(Verdict("reads.fault.p99", False, "p99 not reported"))
    else:
        bound = thresholds.p99_bound_ms(base.p99_ms)
        verdicts.append(
            Verdict(
                "reads.fault.p99",
                fault.p99_ms <= bound,
                f"{fault.p99_ms:.0f} ms {'<=' if fault.p99_ms <= bound else '>'} "
                f"{bound:.0f} ms = max({thresholds.p99_factor:g} x {base.p99_ms:.0f}, "
                f"{base.p99_ms:.0f} + {thresholds.p99_slack_ms:.0f}) (baseline p99 "
                f"{base.p99_ms:.0f} ms)",
            )
        )
    ratio = fault.rps / base.rps if base.rps > 0 else 0.0
    verdicts.append(
        Verdict(
            "reads.fault.rps",
            ratio >= thresholds.min_rps_ratio,
            f"{fault.rps:.1f}/s during the fault = {ratio:.2f} x baseline {base.rps:.1f}/s "
            f"(must be >= {thresholds.min_rps_ratio:.2f})",
        )
    )
    return verdicts


def fault_verdict(phase_log: dict[str, Any], requested: str) -> Verdict | None:
    """Whether the requested fault was injected and reverted (None when none was asked)."""
    if requested == "none":
        return None
    fault = phase_log.get("fault") or {}
    if fault.get("name") != requested:
        return Verdict("fault.injected", False, f"{requested}: no record of its injection")
    if fault.get("error"):
        return Verdict("fault.injected", False, f"{requested}: {fault['error']}")
    applied, reverted = fault.get("applied_at"), fault.get("reverted_at")
    if applied is None or reverted is None:
        return Verdict(
            "fault.injected", False, f"{requested}: applied={applied} reverted={reverted}"
        )
    return Verdict(
        "fault.injected",
        True,
        f"{requested} applied at +{applied:.1f}s, reverted at +{reverted:.1f}s",
    )


def audit_verdicts(acknowledged: set[str], truth: set[str], pending: int | None) -> list[Verdict]:
    """Every acknowledged event in audit_log, and the backlog drained."""
    lost = sorted(acknowledged - truth)
    if not acknowledged:
        lost_verdict = Verdict("audit.lost", False, "no acknowledged events: nothing was checked")
    else:
        sample = f" (e.g. {', '.join(lost[:3])})" if lost else ""
        lost_verdict = Verdict(
            "audit.lost",
            not lost,
            f"{len(lost)} of {len(acknowledged)} acknowledged events missing from audit_log"
            + sample,
        )
    backlog = Verdict(
        "audit.backlog",
        pending == 0,
        "drained (0 pending)"
        if pending == 0
        else "backlog endpoint never answered"
        if pending is None
        else f"{pending} events still pending after recovery",
    )
    return [lost_verdict, backlog]


def read_acks(acks_path: Path) -> set[str]:
    """Acknowledged event ids from `acks_path` and its per-worker siblings (`<name>.<pid>`)."""
    ids: set[str] = set()
    for path in [acks_path, *sorted(acks_path.parent.glob(acks_path.name + ".*"))]:
        if path.exists():
            ids.update(line.strip() for line in path.read_text().splitlines() if line.strip())
    return ids


def read_phase_log(path: Path) -> dict[str, Any]:
    """The locustfile's phase log (phases.json); {} when missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# -- rendering --------------------------------------------------------------------------------

_COLUMNS = ("req", "fail", "rps", "p50", "p95", "p99")
_WIDTHS = (7, 6, 7, 6, 6, 6)


def _cells(stats: PhaseStats | None) -> list[str]:
    if stats is None:
        return ["-"] * len(_COLUMNS)

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    return [
        str(stats.requests),
        str(stats.failures),
        f"{stats.rps:.1f}",
        ms(stats.p50_ms),
        ms(stats.p95_ms),
        ms(stats.p99_ms),
    ]


def render_table(results: Sequence[VariantResult]) -> str:
    """Per-phase reads and writes, one column group per variant (times in ms)."""
    group = sum(_WIDTHS) + len(_WIDTHS) - 1
    head = f"{'phase':<9} {'':<6}"
    lines = [
        head + "".join(f" | {r.variant:^{group}}" for r in results),
        " " * len(head)
        + "".join(
            " | " + " ".join(f"{c:>{w}}" for c, w in zip(_COLUMNS, _WIDTHS, strict=True))
            for _ in results
        ),
    ]
    lines.append("-" * len(lines[1]))
    for phase in PHASES:
        for kind in KINDS:
            row = f"{phase:<9} {kind:<6}"
            for result in results:
                cells = _cells(result.stats.get((phase, kind)))
                row += " | " + " ".join(f"{c:>{w}}" for c, w in zip(cells, _WIDTHS, strict=True))
            lines.append(row)
    lines.append("")
    for kind in KINDS:
        ratios = []
        for result in results:
            ratio = result.rps_ratio(kind)
            ratios.append(f"{result.variant} {'-' if ratio is None else f'{ratio:.2f}'}")
        lines.append(f"RPS ratio fault/baseline ({kind}): " + ", ".join(ratios))
    return "\n".join(lines)


def render_verdicts(result: VariantResult) -> str:
    """The variant's verdict, then one line per verdict."""
    lines = [f"{result.variant}: {'PASS' if result.passed else 'FAIL'}"]
    lines.extend(f"  {v.line()}" for v in result.verdicts)
    return "\n".join(lines)
