"""The service starts and serves with a dependency down from before start-up, reports the
health rule's status, and recovers without a restart once the dependency is back."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.service_support import (
    ServiceFactory,
    audit_rows,
    insert_beneficio,
    wait_until,
)

pytestmark = pytest.mark.integration

RECOVERY_BOUND_S = 10.0


def test_redis_down_from_start_degraded_then_healthy(service_factory: ServiceFactory) -> None:
    """Redis unreachable before start-up: the service starts, /health is DEGRADED (200),
    beneficios load from PostgreSQL, the cache serves from L1; when Redis comes back the
    breaker closes and /health is HEALTHY again without a restart."""
    service = service_factory(wait=False)
    stack = service.stack
    insert_beneficio(stack, "b-7", "Bolsa", 700)
    with stack.redis_proxy.down():
        service.group.start()
        health = service.client.get("/health")
        assert health.status_code == 200, health.text
        body = service.wait_status("DEGRADED", timeout_s=5.0)
        assert body["redis"]["ok"] is False and body["redis"]["error"]
        assert body["database"]["ok"] is True

        got = service.client.get("/beneficios/b-7")
        assert got.status_code == 200, got.text
        assert got.json()["nome"] == "Bolsa" and got.json()["valor"] == 700
        assert got.json()["source"] == "loader"
        again = service.client.get("/beneficios/b-7")
        assert again.status_code == 200 and again.json()["source"] == "l1"

        assert service.client.put("/cache/k", json={"value": "v"}).status_code == 204
        cached = service.client.get("/cache/k")
        assert cached.status_code == 200 and cached.json()["source"] == "l1"
        assert service.client.get("/resilience").json()["overall_health"] == "DEGRADED"
        assert service.instance.running

    healthy = service.wait_status("HEALTHY", timeout_s=RECOVERY_BOUND_S)
    assert healthy["circuit"] == "CLOSED" and healthy["redis"]["ok"] is True
    assert service.client.get("/resilience").json()["redis"]["circuitState"] == "CLOSED"
    assert service.client.put("/cache/k2", json={"value": 2}).status_code == 204
    assert service.client.get("/cache/k2").json()["value"] == 2


def test_postgres_down_from_start_unhealthy_then_healthy(
    service_factory: ServiceFactory,
) -> None:
    """PostgreSQL unreachable before start-up: the service starts and answers; /health is
    UNHEALTHY with 503; /cache works; beneficios answer 503 (and no audit event is written
    for a change that cannot be made); POST /audit is accepted on the queue. Healed, the
    schema is created, /health is HEALTHY and beneficios work, without a restart."""
    service = service_factory(wait=False)
    stack = service.stack
    with stack.postgres_proxy.down():
        service.group.start()
        health = service.client.get("/health")
        assert health.status_code == 503, health.text
        assert health.json()["status"] == "UNHEALTHY"
        assert health.json()["database"]["ok"] is False

        assert service.client.put("/cache/k", json={"value": [1]}).status_code == 204
        cached = service.client.get("/cache/k")
        assert cached.status_code == 200 and cached.json()["value"] == [1]
        assert service.client.delete("/cache/k").status_code == 204

        read = service.client.get("/beneficios/b-1")
        assert read.status_code == 503, read.text
        assert "database unavailable" in read.json()["detail"]
        event_id = uuid.uuid4()
        write = service.client.put(
            "/beneficios/b-1", json={"nome": "x", "valor": 1, "event_id": str(event_id)}
        )
        assert write.status_code == 503, write.text

        accepted = service.post_audit()
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["path"] == "queue"
        assert service.client.get("/resilience").json()["overall_health"] == "UNHEALTHY"

    service.wait_status("HEALTHY", timeout_s=RECOVERY_BOUND_S)
    put = service.client.put("/beneficios/b-1", json={"nome": "y", "valor": 2})
    assert put.status_code == 200, put.text
    assert service.client.get("/beneficios/b-1").json()["nome"] == "y"
    queued = uuid.UUID(accepted.json()["event_id"])
    wait_until(lambda: queued in audit_rows(stack), RECOVERY_BOUND_S, what="queued event")
    assert event_id not in audit_rows(stack), "an audit event for a refused change"
