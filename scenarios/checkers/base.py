"""What a checker is: a verdict on a history and the truth read after healing."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from scenarios.history import JSON, History

if TYPE_CHECKING:
    from scenarios.checkers.final_read import FinalReads
    from scenarios.checkers.prometheus import AlertTimeline

MAX_SAMPLES = 20


@dataclass(frozen=True)
class Truth:
    """What the harness read after healing, bypassing the target and Toxiproxy."""

    audit_rows: Mapping[str, int] = field(default_factory=dict)
    """event_id -> number of rows in audit_log (read over the direct database URL)."""
    audit_pending: int | None = None
    """Journal + queue backlog the target reported after recovery; None if not read."""
    beneficios: Mapping[str, JSON] | None = None
    """Optional: beneficio id -> row as read from the database."""
    alerts: AlertTimeline | None = None
    """Optional: which alerts Prometheus had firing when (runs with Prometheus)."""
    """Optional: beneficio id -> row ({"nome", "valor", "v"}) as read from the database."""
    audit_full: Mapping[str, Sequence[Mapping[str, JSON]]] | None = None
    """Optional: event_id -> its rows ({"actor", "action", "entity", "entity_id",
    "payload"}) as read from the database; None when not read."""
    final_reads: FinalReads | None = None
    """Optional: the final-read phase's observations (scenarios/run/final_read.py)."""


@dataclass(frozen=True)
class CheckResult:
    """A checker's verdict; `details` and `thresholds` are JSON-safe."""

    checker: str
    passed: bool
    summary: str
    details: Mapping[str, JSON] = field(default_factory=dict)
    thresholds: Mapping[str, JSON] = field(default_factory=dict)

    def to_json(self) -> dict[str, JSON]:
        """The result as JSON (results.json)."""
        return {
            "checker": self.checker,
            "passed": self.passed,
            "summary": self.summary,
            "details": dict(self.details),
            "thresholds": dict(self.thresholds),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, JSON]) -> CheckResult:
        """A result from its JSON form."""
        return cls(
            checker=str(data["checker"]),
            passed=bool(data["passed"]),
            summary=str(data["summary"]),
            details=dict(data.get("details") or {}),
            thresholds=dict(data.get("thresholds") or {}),
        )


class Checker(Protocol):
    """Reads a history and the truth, returns a verdict; never raises on bad data."""

    @property
    def name(self) -> str:
        """The checker's name in results and reports."""

    def check(self, history: History, truth: Truth) -> CheckResult:
        """Judge one run: its history and the truth read after it."""


def run_checkers(
    checkers: Iterable[Checker], history: History, truth: Truth
) -> tuple[CheckResult, ...]:
    """Run each checker; one that raises becomes a failed result naming the exception."""
    results: list[CheckResult] = []
    for checker in checkers:
        try:
            results.append(checker.check(history, truth))
        except Exception as exc:  # a broken checker must fail its check, not the run
            results.append(
                CheckResult(
                    checker.name,
                    False,
                    f"checker crashed: {type(exc).__name__}: {exc}",
                    {"error": repr(exc)},
                )
            )
    return tuple(results)


def samples(items: Iterable[str], limit: int = MAX_SAMPLES) -> list[str]:
    """Up to `limit` items, sorted, for a result's details."""
    return sorted(items)[:limit]
