"""The operators' gauges behind the Prometheus rules: health status, probes, dead letters
and queue backlog, as `/metrics` renders them."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from reference.metrics import ResilienceMetrics


@pytest.mark.parametrize(
    ("status", "value"), [("HEALTHY", 0.0), ("DEGRADED", 1.0), ("UNHEALTHY", 2.0)]
)
def test_health_status_gauge_follows_the_status(status: str, value: float) -> None:
    """stormproof_health_status is the number SYSTEM_UNHEALTHY compares with 2."""
    metrics = ResilienceMetrics()
    metrics.set_health(status, redis_ok=False, database_ok=True)
    registry = metrics.registry
    assert registry.get_sample_value("stormproof_health_status") == value
    assert registry.get_sample_value("stormproof_dependency_up", {"dependency": "redis"}) == 0
    assert registry.get_sample_value("stormproof_dependency_up", {"dependency": "database"}) == 1


def test_dead_letters_and_queue_backlog_are_published_under_the_rules_names() -> None:
    """The names deploy/prometheus/rules.yml and the Grafana dashboard query."""
    metrics = ResilienceMetrics()
    metrics.set_dead_letters(3)
    metrics.set_queue_backlog(17)
    text = generate_latest(metrics.registry).decode()
    assert "\nstormproof_audit_dead_letters 3.0\n" in text
    assert "\nstormproof_audit_queue_backlog 17.0\n" in text


def test_an_unknown_status_is_refused() -> None:
    """A status outside the health rule is a programming error, not a silent 0."""
    with pytest.raises(KeyError):
        ResilienceMetrics().set_health("FINE", redis_ok=True, database_ok=True)
