"""Beneficios: after the run, each row is the last acknowledged write (or a later one).

A beneficio is written by one worker at a time with increasing versions `v`. For every
id with an acknowledged (200) PUT, the database row (read directly after healing) must
hold a version at least the last acknowledged one, and be exactly what the PUT of that
version sent (`nome`, `valor`):

- lost: no row, or a row older than the last acknowledged write;
- corrupted: the row's `nome`/`valor` differ from what its version's PUT sent, or its
  version was never sent;
- refused_landed: the row holds a version whose PUT was refused (503 "the change was not
  made"): reported, not failed (the audit event may have been recorded first);
- at_later_unknown: the row holds a later version whose PUT outcome is unknown (allowed).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from scenarios.checkers.base import MAX_SAMPLES, CheckResult, Truth
from scenarios.checkers.evidence import DEFAULT_MIN_EVIDENCE
from scenarios.history import JSON, History, Op

FAILING = ("lost", "corrupted")


@dataclass(frozen=True)
class BeneficiosChecker:
    """Every beneficio's stored row against its last acknowledged write."""

    min_evidence: int = DEFAULT_MIN_EVIDENCE
    """Acknowledged PUTs needed over the run."""
    name: str = "beneficios"

    def check(self, history: History, truth: Truth) -> CheckResult:
        puts: dict[str, dict[int, list[Op]]] = defaultdict(lambda: defaultdict(list))
        for op in history.ops_for("beneficio_put"):
            v = op.request.get("v") if isinstance(op.request, dict) else None
            if op.key is not None and isinstance(v, int):
                puts[op.key][v].append(op)
        found: dict[str, list[dict[str, JSON]]] = {
            c: [] for c in (*FAILING, "refused_landed", "at_later_unknown")
        }
        acked_puts = 0
        rows = truth.beneficios
        for key, versions in puts.items():
            acked = [v for v, ops in versions.items() if any(o.outcome == "ok" for o in ops)]
            acked_puts += sum(1 for ops in versions.values() for o in ops if o.outcome == "ok")
            if not acked or rows is None:
                continue
            last = max(acked)
            row = rows.get(key)
            stored = row.get("v") if isinstance(row, dict) else None
            sample: dict[str, JSON] = {"id": key, "last_acked_v": last, "row": row}
            if not isinstance(stored, int) or stored < last:
                found["lost"].append(sample)
                continue
            sent = versions.get(stored, [])
            if not sent or any(_differs(op, row) for op in sent):
                found["corrupted"].append(sample)
            elif stored > last:
                outcomes = {o.outcome for o in sent}
                kind = "at_later_unknown" if "info" in outcomes else "refused_landed"
                found[kind].append(sample)
        counts = {c: len(v) for c, v in found.items()}
        problems = [f"{counts[c]} {c}" for c in FAILING if counts[c]]
        if rows is None:
            problems.append("the beneficios table was not read: nothing shows the rows")
        if acked_puts < self.min_evidence:
            problems.append(
                f"insufficient evidence: {acked_puts} acknowledged beneficio writes "
                f"(minimum {self.min_evidence})"
            )
        details: dict[str, JSON] = {
            "ids": len(puts),
            "acknowledged_puts": acked_puts,
            "counts": counts,
            "samples": {c: v[:MAX_SAMPLES] for c, v in found.items() if v},
            "insufficient_evidence": [p for p in problems if p.startswith("insufficient")],
        }
        summary = (
            "; ".join(problems)
            if problems
            else f"{len(puts)} beneficios hold their last acknowledged write "
            f"({acked_puts} acknowledged writes; {counts['at_later_unknown']} at a later "
            f"unknown one)"
        )
        return CheckResult(
            self.name,
            not problems,
            summary,
            details,
            {"lost": 0, "corrupted": 0, "min_evidence": self.min_evidence},
        )


def _differs(op: Op, row: JSON) -> bool:
    if not isinstance(op.request, dict) or not isinstance(row, dict):
        return True
    return any(op.request.get(f) != row.get(f) for f in ("nome", "valor"))
