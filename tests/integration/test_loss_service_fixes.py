"""Smaller service defects of issue 12 (item 8), on a real service.

- `/health` does not show dependency error strings to unauthenticated callers (they may
  name hosts, ports, users: anonymous callers get "unavailable"); the admin sees them.
- `/resilience` carries the seed's top-level `timestamp`.
- `RESILIENCE_METRICS_ENABLED=false` turns the metrics endpoints off.
"""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from scenarios.stack import Stack
from tests.integration.service_support import AUTH, ServiceFactory

pytest_plugins = ["tests.integration.service_support"]
pytestmark = pytest.mark.integration


def test_health_hides_dependency_errors_from_anonymous_callers(
    stormproof_stack: Stack, service_factory: ServiceFactory
) -> None:
    """PostgreSQL cut off: the anonymous body has no error text; the admin's has it."""
    service = service_factory()
    stormproof_stack.postgres_proxy.disable()
    try:
        service.wait_status("UNHEALTHY")
        anonymous = service.client.get("/health").json()
        admin = service.client.get("/health", headers=AUTH).json()
    finally:
        stormproof_stack.postgres_proxy.enable()
    assert anonymous["database"]["ok"] is False
    shown = json.dumps(anonymous)
    assert "127.0.0.1" not in shown and "OperationalError" not in shown, anonymous["database"]
    assert "OperationalError" in str(admin["database"].get("error")), admin["database"]


def test_resilience_has_a_timestamp(service_factory: ServiceFactory) -> None:
    """The seed's /resilience JSON has a top-level ISO 8601 `timestamp`."""
    body = service_factory().client.get("/resilience").json()
    assert "timestamp" in body, sorted(body)
    datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))


def test_metrics_can_be_turned_off(service_factory: ServiceFactory) -> None:
    """RESILIENCE_METRICS_ENABLED=false: /metrics and /resilience answer 404."""
    service = service_factory(RESILIENCE_METRICS_ENABLED="false")
    assert service.client.get("/metrics").status_code == 404
    assert service.client.get("/resilience").status_code == 404
    assert service.client.get("/health").status_code == 200
