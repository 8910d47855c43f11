"""Audit: every acknowledged event lands exactly once, and nothing else does.

Attempts are the ops of `fs` (default `audit` and `beneficio_put`, which records an
audit event too) carrying an `event_id` in their request, or else in their response.
Per event_id (retries of one id are merged): acknowledged if any attempt was ok (202),
unknown if none was ok but one was info (timeout, reset), refused if every attempt
failed definitely (4xx, 503). Against the truth (rows per event_id in audit_log):

- lost: acknowledged but absent — a broken guarantee;
- duplicated: more than one row — a broken idempotency key;
- unexpected: a row whose event_id was never invoked;
- recovered_after_fail: refused yet present (reported, allowed: at-least-once);
- unknown_present / unknown_absent: unknown outcomes, either way allowed;
- ack_mismatch: an acknowledgement naming another event_id;
- pending: the backlog the target reports after recovery.

The truth must hold only events the workload can know about: rows written with ids the
history never saw (a beneficio update that does not return its event_id, another
writer) count as unexpected; restrict the truth query (e.g. by actor) in that case.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from scenarios.checkers.base import CheckResult, Truth, samples
from scenarios.checkers.evidence import DEFAULT_MIN_EVIDENCE, Segment, segments, shortfalls
from scenarios.checkers.queue_failover import queue_failover
from scenarios.history import JSON, History, Op

CATEGORIES = (
    "lost",
    "duplicated",
    "unexpected",
    "ack_mismatch",
    "recovered_after_fail",
    "unknown_present",
    "unknown_absent",
    "refused_absent",
    "corrupted",
)
FAILING = ("lost", "duplicated", "unexpected", "ack_mismatch", "corrupted")
ROW_FIELDS = ("actor", "action", "entity", "entity_id", "payload")


def event_id_of(value: JSON) -> str | None:
    """The `event_id` of a request or response value, if it has one."""
    if isinstance(value, dict):
        eid = value.get("event_id")
        if isinstance(eid, str) and eid:
            return eid
    return None


@dataclass(frozen=True)
class AuditChecker:
    """Lost / duplicated / unexpected audit events; optionally a drained backlog."""

    require_drained: bool = True
    fs: tuple[str, ...] = ("audit", "beneficio_put")
    min_evidence: int = DEFAULT_MIN_EVIDENCE
    """Acknowledged events needed in the baseline, each fault window and the recovery."""
    exempt_windows: tuple[str, ...] = ()
    """Fault windows (by name) in which no acknowledgement is expected, so no ack evidence
    is demanded there (e.g. the journal's disk failing while both other paths are down:
    writes must be refused)."""
    compare_rows: bool = True
    """Compare every stored row's fields with what was sent (`corrupted`); the truth's
    full rows must then have been read."""
    paths: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Per phase (baseline / fault / recovery): the paths that must each have carried
    acknowledged events in every segment of that phase (e.g. {"fault": ["file"]})."""
    name: str = "audit"

    def __post_init__(self) -> None:
        unknown = set(self.paths) - {"baseline", "fault", "recovery"}
        if unknown:
            raise ValueError(f"audit.paths: unknown phase(s) {sorted(unknown)}")

    def check(self, history: History, truth: Truth) -> CheckResult:
        """Compare every acknowledged event with the rows in the truth."""
        attempts: dict[str, list[Op]] = defaultdict(list)
        without_id: Counter[str] = Counter()
        for op in history.ops_for(*self.fs):
            eid = event_id_of(op.request) or event_id_of(op.response)
            if eid is None:
                without_id[op.f] += 1
            else:
                attempts[eid].append(op)

        found: dict[str, set[str]] = {c: set() for c in CATEGORIES}
        path_of: dict[str, str] = {}
        acked: set[str] = set()
        for eid, ops in attempts.items():
            rows = truth.audit_rows.get(eid, 0)
            oks = [op for op in ops if op.outcome == "ok"]
            if rows > 1:
                found["duplicated"].add(eid)
            if oks:
                acked.add(eid)
                path_of[eid] = _path(oks[0].response)
                if any(event_id_of(op.response) not in (None, eid) for op in oks):
                    found["ack_mismatch"].add(eid)
                if rows == 0:
                    found["lost"].add(eid)
            elif any(op.outcome == "info" for op in ops):
                found["unknown_present" if rows else "unknown_absent"].add(eid)
            else:
                found["recovered_after_fail" if rows else "refused_absent"].add(eid)
        corrupted_fields: Counter[str] = Counter()
        if self.compare_rows and truth.audit_full is not None:
            for eid, ops in attempts.items():
                bad = _corrupted(ops, truth.audit_full.get(eid, ()))
                if bad:
                    found["corrupted"].add(eid)
                    corrupted_fields.update(bad)
        found["unexpected"] = {
            eid for eid, rows in truth.audit_rows.items() if rows > 0 and eid not in attempts
        }
        found["duplicated"] |= {eid for eid in found["unexpected"] if truth.audit_rows[eid] > 1}

        acked_at = {
            eid: min(op.start for op in attempts[eid] if op.outcome == "ok") for eid in acked
        }
        where = [g for g in segments(history) if not self._exempt(g)]
        evidence = shortfalls(acked_at.values(), where, self.min_evidence, "audit acks")
        per_segment = _paths_per_segment(where, acked_at, path_of)
        evidence += self._missing_paths(where, per_segment)
        if self.compare_rows and truth.audit_full is None:
            evidence.append("the stored rows were not read: nothing shows they are intact")
        counts = {c: len(ids) for c, ids in found.items()}
        pending = truth.audit_pending
        # an unread backlog cannot show that recovery drained: unproven is not a pass
        drained_failed = self.require_drained and (pending is None or pending > 0)
        passed = not any(counts[c] for c in FAILING) and not drained_failed and not evidence
        details: dict[str, JSON] = {
            "events": len(attempts),
            "acknowledged": len(acked),
            "ops_without_event_id": dict(without_id),
            "counts": counts,
            "samples": {c: samples(ids) for c, ids in found.items() if ids},
            "acks_per_path": dict(Counter(path_of.values())),
            "by_path": _by_path(path_of, found),
            "pending": pending,
            "rows_in_truth": sum(1 for rows in truth.audit_rows.values() if rows > 0),
            "insufficient_evidence": evidence,
            "acks_per_path_per_segment": per_segment,
            "corrupted_fields": dict(corrupted_fields),
            # first queue write refused -> first taken again, after the first Redis fault
            "queue_failover": queue_failover(
                history.ops_for("audit"), history.fault_windows(), _path
            ),
            "rows_compared": None
            if truth.audit_full is None or not self.compare_rows
            else sum(len(r) for r in truth.audit_full.values()),
        }
        summary = _summary(len(acked), counts, pending, self.require_drained)
        return CheckResult(
            self.name,
            passed,
            "; ".join([*evidence, summary]),
            details,
            {
                "lost": 0,
                "duplicated": 0,
                "unexpected": 0,
                "ack_mismatch": 0,
                "corrupted": 0,
                "pending": 0 if self.require_drained else None,
                "min_evidence": self.min_evidence,
                "paths": {phase: list(p) for phase, p in self.paths.items()},
            },
        )

    def _exempt(self, segment: Segment) -> bool:
        return any(segment.label.endswith(f"({name})") for name in self.exempt_windows)

    def _missing_paths(
        self, where: Sequence[Segment], per_segment: Mapping[str, Mapping[str, int]]
    ) -> list[str]:
        missing = []
        for seg in where:
            phase = "fault" if seg.label.startswith("fault window") else seg.label
            for path in self.paths.get(phase, ()):
                if not per_segment.get(seg.label, {}).get(path):
                    missing.append(f"no audit ack through path {path!r} in {seg.label}")
        return missing


def _corrupted(ops: Sequence[Op], rows: Sequence[Mapping[str, JSON]]) -> list[str]:
    """The fields in which a stored row differs from what an `audit` call sent."""
    sent = next(
        (
            op.request
            for op in ops
            if op.f == "audit"
            and isinstance(op.request, dict)
            and all(f in op.request for f in ROW_FIELDS)
        ),
        None,
    )
    if sent is None:
        return []
    return sorted({f for row in rows for f in ROW_FIELDS if row.get(f) != sent[f]})


def _paths_per_segment(
    where: Sequence[Segment], acked_at: Mapping[str, float], path_of: Mapping[str, str]
) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {}
    for seg in where:
        counts = Counter(path_of[eid] for eid, t in acked_at.items() if seg.contains(t))
        table[seg.label] = dict(sorted(counts.items()))
    return table


def _path(response: JSON) -> str:
    """The path an acknowledgement names: `path` (POST /audit) or `audit.path` (a
    beneficio PUT, which carries its audit event's acknowledgement under `audit`)."""
    if isinstance(response, dict):
        if isinstance(response.get("path"), str):
            return str(response["path"])
        nested = response.get("audit")
        if isinstance(nested, dict) and isinstance(nested.get("path"), str):
            return str(nested["path"])
    return "unknown"


def _by_path(path_of: dict[str, str], found: dict[str, set[str]]) -> dict[str, JSON]:
    table: dict[str, JSON] = {}
    for path in sorted(set(path_of.values())):
        ids = {eid for eid, p in path_of.items() if p == path}
        table[path] = {
            "acked": len(ids),
            "lost": len(ids & found["lost"]),
            "duplicated": len(ids & found["duplicated"]),
        }
    return table


def _summary(acked: int, counts: dict[str, int], pending: int | None, drained: bool) -> str:
    parts = [f"{acked} acknowledged"]
    parts += [f"{counts[c]} {c.replace('_', ' ')}" for c in FAILING if counts[c]]
    if not any(counts[c] for c in FAILING):
        parts.append("none lost, duplicated or unexpected")
    if counts["recovered_after_fail"]:
        parts.append(f"{counts['recovered_after_fail']} recovered after fail")
    if pending is None:
        parts.append("backlog not read")
    elif pending or drained:
        parts.append(f"{pending} pending")
    return ", ".join(parts)
