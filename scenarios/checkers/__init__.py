"""Checkers: verdicts on a recorded history and the truth read after healing."""

from scenarios.checkers.audit import AuditChecker
from scenarios.checkers.base import Checker, CheckResult, Truth, run_checkers
from scenarios.checkers.beneficios import BeneficiosChecker
from scenarios.checkers.breaker import BreakerTimelineChecker
from scenarios.checkers.cache import CacheAvailabilityChecker
from scenarios.checkers.health import HealthChecker
from scenarios.checkers.latency import (
    LatencyChecker,
    Percentiles,
    PhaseStats,
    PhaseThresholds,
    percentiles,
    phase_stats,
)
from scenarios.checkers.phases import PHASES, Phase, phase_of, phase_spans
from scenarios.checkers.prometheus import AlertTimeline, PrometheusAlertsChecker
from scenarios.checkers.staleness import StalenessChecker
from scenarios.checkers.steady import STEADY_STATE, SteadyStateChecker
from scenarios.checkers.writes import WriteAvailabilityChecker

__all__ = [
    "PHASES",
    "STEADY_STATE",
    "AlertTimeline",
    "AuditChecker",
    "BeneficiosChecker",
    "BreakerTimelineChecker",
    "CacheAvailabilityChecker",
    "CheckResult",
    "Checker",
    "HealthChecker",
    "LatencyChecker",
    "Percentiles",
    "Phase",
    "PhaseStats",
    "PhaseThresholds",
    "PrometheusAlertsChecker",
    "StalenessChecker",
    "SteadyStateChecker",
    "Truth",
    "WriteAvailabilityChecker",
    "percentiles",
    "phase_of",
    "phase_spans",
    "phase_stats",
    "run_checkers",
]
