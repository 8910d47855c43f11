"""Write availability: the share of writes refused or left unknown, per kind and segment.

`write_availability = { audit = 0.0, beneficio_put = { fault = 0.05 } }`: for each
operation kind, the largest share of its writes that may be refused (any HTTP error: the
workload's requests are all valid, so a 422 counts too; a refused connection) or unknown (a
timeout, a reset), either one number for every segment or per phase (`baseline`, `fault`
= each fault window on its own, `recovery`). A write belongs to the segment of its start.
Each judged segment needs `min_evidence` writes of that kind (a service that stops
answering writes cannot pass by having none judged). Writes in flight while the target
process itself was down (a `target` fault window, until the target answered again) are
not judged: nothing could answer them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from scenarios.checkers.base import MAX_SAMPLES, CheckResult, Truth
from scenarios.checkers.evidence import (
    DEFAULT_MIN_EVIDENCE,
    Segment,
    segments,
    target_down,
)
from scenarios.history import JSON, History, Op

WRITE_KINDS = ("audit", "beneficio_put", "cache_put", "cache_delete")
SEGMENT_PHASES = ("baseline", "fault", "recovery")


def refused_or_unknown(op: Op) -> str | None:
    """ "refused" / "unknown" for a write that was not accepted; None when it was. The
    workload's requests are valid by construction, so a 4xx (a 422 included) is a
    refusal like a 5xx."""
    if op.outcome == "ok":
        return None
    if op.outcome == "info":
        return "unknown"
    return "refused"


def _phase(seg: Segment) -> str:
    return "fault" if seg.label.startswith("fault window") else seg.label


@dataclass(frozen=True)
class WriteAvailabilityChecker:
    """Fails when a segment's share of refused or unknown writes of a kind is too high."""

    limits: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    min_evidence: int = DEFAULT_MIN_EVIDENCE
    name: str = "write-availability"

    def __post_init__(self) -> None:
        for kind, phases in self.limits.items():
            if kind not in WRITE_KINDS:
                raise ValueError(f"write_availability: unknown write {kind!r} ({WRITE_KINDS})")
            for phase, share in phases.items():
                if phase not in SEGMENT_PHASES:
                    raise ValueError(
                        f"write_availability.{kind}: unknown phase {phase!r} {SEGMENT_PHASES}"
                    )
                if not 0.0 <= share <= 1.0:
                    raise ValueError(f"write_availability.{kind}.{phase}: a share in [0, 1]")

    @classmethod
    def from_options(cls, options: Mapping[str, object]) -> WriteAvailabilityChecker:
        """From the TOML table: kind = share (every phase) | { phase = share, ... }."""
        limits: dict[str, dict[str, float]] = {}
        min_evidence = DEFAULT_MIN_EVIDENCE
        for kind, value in options.items():
            if kind == "min_evidence":
                min_evidence = int(value)  # type: ignore[call-overload]
            elif isinstance(value, int | float) and not isinstance(value, bool):
                limits[kind] = dict.fromkeys(SEGMENT_PHASES, float(value))
            elif isinstance(value, Mapping):
                limits[kind] = {str(p): float(v) for p, v in value.items()}
            else:
                raise ValueError(f"write_availability.{kind}: a share or a table of phases")
        return cls(limits, min_evidence)

    def check(self, history: History, truth: Truth) -> CheckResult:
        where = segments(history)
        blind = target_down(history)
        problems: list[str] = []
        table: dict[str, JSON] = {}
        samples: list[dict[str, JSON]] = []
        for kind, phases in self.limits.items():
            ops = [op for op in history.ops_for(kind) if not _during(op, blind)]
            rows: dict[str, JSON] = {}
            for seg in where:
                limit = phases.get(_phase(seg))
                judged = [op for op in ops if seg.contains(op.start)]
                bad = [(op, why) for op in judged if (why := refused_or_unknown(op))]
                why_counts = Counter(why for _, why in bad)
                share = len(bad) / len(judged) if judged else 0.0
                rows[seg.label] = {
                    "writes": len(judged),
                    "refused": why_counts["refused"],
                    "unknown": why_counts["unknown"],
                    "share": share,
                    "limit": limit,
                }
                if limit is None:
                    continue
                if len(judged) < (required := seg.required(self.min_evidence)):
                    problems.append(
                        f"insufficient evidence: {len(judged)} {kind} writes in {seg.label} "
                        f"(minimum {required})"
                    )
                elif share > limit:
                    problems.append(
                        f"{kind}: {why_counts['refused']} refused + {why_counts['unknown']} "
                        f"unknown of {len(judged)} in {seg.label} ({share:.1%} > {limit:.1%})"
                    )
                    samples += [_sample(op, why) for op, why in bad[:5]]
            table[kind] = rows
        details: dict[str, JSON] = {
            "per_kind": table,
            "problems": problems,
            "samples": samples[:MAX_SAMPLES],
            "excluded_target_down_s": [[a, b] for a, b in blind],
        }
        summary = "; ".join(problems) if problems else _ok_summary(table)
        thresholds: dict[str, JSON] = {k: dict(v) for k, v in self.limits.items()}
        thresholds["min_evidence"] = self.min_evidence
        return CheckResult(self.name, not problems, summary, details, thresholds)


def _during(op: Op, spans: list[tuple[float, float]]) -> bool:
    end = op.end if op.end is not None else op.start
    return any(op.start < b and end >= a for a, b in spans)


def _sample(op: Op, why: str) -> dict[str, JSON]:
    return {
        "t": op.start,
        "f": op.f,
        "why": why,
        "status": op.status,
        "error": op.error,
        "instance": op.instance,
    }


def _ok_summary(table: dict[str, JSON]) -> str:
    parts = []
    for kind, rows in table.items():
        if isinstance(rows, dict):
            n = sum(int(r["writes"]) for r in rows.values() if isinstance(r, dict))
            bad = sum(
                int(r["refused"]) + int(r["unknown"]) for r in rows.values() if isinstance(r, dict)
            )
            parts.append(f"{kind}: {bad} of {n} refused or unknown")
    return "within limits: " + ", ".join(parts)
