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
from dataclasses import dataclass

from scenarios.checkers.base import CheckResult, Truth, samples
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
)
FAILING = ("lost", "duplicated", "unexpected", "ack_mismatch")


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
    name: str = "audit"

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
        found["unexpected"] = {
            eid for eid, rows in truth.audit_rows.items() if rows > 0 and eid not in attempts
        }
        found["duplicated"] |= {eid for eid in found["unexpected"] if truth.audit_rows[eid] > 1}

        counts = {c: len(ids) for c, ids in found.items()}
        pending = truth.audit_pending
        # an unread backlog cannot show that recovery drained: unproven is not a pass
        drained_failed = self.require_drained and (pending is None or pending > 0)
        passed = not any(counts[c] for c in FAILING) and not drained_failed
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
        }
        return CheckResult(
            self.name,
            passed,
            _summary(len(acked), counts, pending, self.require_drained),
            details,
            {
                "lost": 0,
                "duplicated": 0,
                "unexpected": 0,
                "ack_mismatch": 0,
                "pending": 0 if self.require_drained else None,
            },
        )


def _path(response: JSON) -> str:
    if isinstance(response, dict) and isinstance(response.get("path"), str):
        return str(response["path"])
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
