"""Alerts: the seed's four rules, evaluated periodically, deduplicated, sent to sinks.

`rules.py` (the rules and their thresholds), `signals.py` (cumulative counters into
recent counts), `sinks.py` (log and webhook), `evaluator.py` (the cooldown logic and the
periodic loop). Thresholds are built at the edge (`reference/service/configs.py`).
"""

from reference.alerts.evaluator import AlertEvaluator
from reference.alerts.rules import (
    RULES,
    AlertEvent,
    AlertRule,
    AlertSignals,
    AlertThresholds,
    Reading,
)
from reference.alerts.signals import CumulativeCounters, SignalWindow
from reference.alerts.sinks import AlertSink, LogSink, WebhookSink

__all__ = [
    "RULES",
    "AlertEvaluator",
    "AlertEvent",
    "AlertRule",
    "AlertSignals",
    "AlertSink",
    "AlertThresholds",
    "CumulativeCounters",
    "LogSink",
    "Reading",
    "SignalWindow",
    "WebhookSink",
]
