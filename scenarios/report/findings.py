"""The report's "findings by category" table: what each check counted, one row a category.

Rows come from the checks' details: lost / duplicated / unexpected / corrupted rows (audit,
beneficios), insufficient evidence (any checker), the steady-state
problems (INVALID), refused and unknown writes per segment, the staleness categories
(stale during a fault / after the heal, resurrected, non-monotonic, never written) and
the misses of written keys per phase, and the final reads' (stale, resurrected, diverged,
missing, error, late, disagree, after the stop). A category with nothing in it is left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from scenarios.checkers.base import CheckResult
from scenarios.history import JSON

STALENESS_CATEGORIES = (
    ("stale_after_heal", "stale after heal"),
    ("stale_during_fault", "stale during fault"),
    ("resurrected", "resurrected delete"),
    ("non_monotonic", "non-monotonic"),
    ("never_written", "never-written value"),
)


@dataclass(frozen=True)
class Finding:
    """One row: a category, the check that counted it, how many, and where/why."""

    category: str
    checker: str
    count: int
    detail: str
    failing: bool


def findings(checks: tuple[CheckResult, ...]) -> list[Finding]:
    """Every non-empty category the checks counted, failing ones first."""
    rows: list[Finding] = []
    for check in checks:
        d = check.details
        for text in _list(d.get("insufficient_evidence")):
            rows.append(Finding("insufficient evidence", check.checker, 1, str(text), True))
        if check.checker == "steady-state":
            for text in _list(d.get("problems")):
                rows.append(Finding("INVALID baseline", check.checker, 1, str(text), True))
        counts = d.get("counts")
        if isinstance(counts, Mapping):
            for category in ("lost", "duplicated", "unexpected", "corrupted", "ack_mismatch"):
                n = int(counts.get(category) or 0)
                if n:
                    samples = d.get("samples")
                    few = samples.get(category) if isinstance(samples, Mapping) else None
                    rows.append(Finding(category, check.checker, n, _brief(few), True))
        if check.checker == "final_read" and isinstance(counts, Mapping):
            rows += _final_reads(check.checker, counts, d.get("samples"))
        per_kind = d.get("per_kind")
        if isinstance(per_kind, Mapping):
            rows += _writes(check.checker, per_kind)
        for key, label in STALENESS_CATEGORIES:
            cat = d.get(key)
            if isinstance(cat, Mapping) and int(cat.get("count") or 0):
                worst = float(cat.get("worst_s") or 0.0)
                rows.append(
                    Finding(
                        label,
                        check.checker,
                        int(cat["count"]),
                        f"worst {worst:.2f} s" + (" (allowed)" if cat.get("allowed") else ""),
                        not cat.get("allowed"),
                    )
                )
        misses = d.get("written_misses_by_phase")
        if isinstance(misses, Mapping):
            for phase, n in misses.items():
                if n:
                    limit = check.thresholds.get("max_written_misses") or {}
                    bounded = isinstance(limit, Mapping) and phase in limit
                    judged = d.get("written_misses_judged_by_phase")
                    counted = judged.get(phase, 0) if isinstance(judged, Mapping) else n
                    rows.append(
                        Finding(
                            "miss of a written key",
                            check.checker,
                            int(n),
                            f"{phase} phase"
                            + ("" if bounded else " (reported only)")
                            + ("" if counted == n else f", {counted} written since the last heal"),
                            bounded and int(counted) > int(limit[phase]),
                        )
                    )
    return sorted(rows, key=lambda r: not r.failing)


def _writes(checker: str, per_kind: Mapping[str, JSON]) -> list[Finding]:
    rows = []
    for kind, segments in per_kind.items():
        if not isinstance(segments, Mapping):
            continue
        for segment, row in segments.items():
            if not isinstance(row, Mapping):
                continue
            limit = row.get("limit")
            over = limit is not None and float(row.get("share") or 0.0) > float(limit)
            for what in ("refused", "unknown"):
                n = int(row.get(what) or 0)
                if n:
                    detail = f"{kind} in {segment}: {n} of {row.get('writes')}"
                    rows.append(Finding(f"{what} write", checker, n, detail, over))
    return rows


def _final_reads(checker: str, counts: Mapping[str, JSON], samples: JSON) -> list[Finding]:
    """The final-read categories: stale, resurrected, diverged, missing, error, late,
    disagree, after_stop (scenarios/checkers/final_read.py)."""
    rows = []
    for category, n in counts.items():
        few = samples.get(category) if isinstance(samples, Mapping) else None
        where = ", ".join(
            f"{x.get('source')}:{x.get('kind')}/{x.get('key')}"
            for x in (few if isinstance(few, list) else [])[:3]
            if isinstance(x, Mapping)
        )
        if isinstance(n, int) and n:
            rows.append(Finding(f"final read: {category}", checker, n, where, True))
    return rows


def _brief(samples: JSON) -> str:
    if not isinstance(samples, list):
        return ""
    return "e.g. " + ", ".join(
        str(x.get("id") if isinstance(x, Mapping) else x) for x in samples[:3]
    )


def _list(value: JSON) -> list[JSON]:
    return list(value) if isinstance(value, list) else []
