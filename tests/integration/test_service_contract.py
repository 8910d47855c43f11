"""The target contract over HTTP: each endpoint's success and error shapes, driven against a
real `python -m reference.service` on the real stack (DESIGN, "The target contract")."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
import redis

from tests.integration.service_support import (
    ADMIN_TOKEN,
    AUTH,
    Service,
    audit_body,
    audit_rows,
    wait_until,
)

pytestmark = pytest.mark.integration

L2_PREFIX = "stormproof:kv:"  # the cache prefix, then the /cache namespace
DELIVERY_BOUND_S = 10.0


def test_cache_put_get_delete(service: Service) -> None:
    """PUT -> 204 with no body; GET -> 200 {key, value, source}; DELETE -> 204; then 404."""
    c = service.client
    value = {"nested": [1, 2.5, "três", None, True], "n": 7}
    put = c.put("/cache/contract:k1", json={"value": value, "ttl_s": 60})
    assert put.status_code == 204, put.text
    assert put.content == b""

    got = c.get("/cache/contract:k1")
    assert got.status_code == 200, got.text
    assert got.headers["content-type"].startswith("application/json")
    body = got.json()
    # l2 until the invalidation subscription is up (an untrusted L1 asks L2 first)
    assert body == {"key": "contract:k1", "value": value, "source": body["source"]}
    assert body["source"] in ("l1", "l2")

    deleted = c.delete("/cache/contract:k1")
    assert deleted.status_code == 204, deleted.text
    assert deleted.content == b""
    missing = c.get("/cache/contract:k1")
    assert missing.status_code == 404
    assert "contract:k1" in missing.json()["detail"]

    again = c.delete("/cache/never-set")
    assert again.status_code == 204, "DELETE of an absent key is still 204"
    scalar = c.put("/cache/contract:scalar", json={"value": None})
    assert scalar.status_code == 204, "any JSON value is cacheable, null included"


def test_cache_reads_l2_written_by_someone_else(service: Service) -> None:
    """A value present only in Redis (another instance wrote it) is served with source l2,
    and L2 writes land in Redis under the configured prefix."""
    direct = redis.Redis.from_url(service.stack.urls.redis_direct_url, socket_timeout=5)
    try:
        direct.set(f"{L2_PREFIX}contract:other", json.dumps({"from": "elsewhere"}))
        got = service.client.get("/cache/contract:other")
        assert got.status_code == 200, got.text
        assert got.json() == {
            "key": "contract:other",
            "value": {"from": "elsewhere"},
            "source": "l2",
        }

        assert service.client.put("/cache/contract:mine", json={"value": [1, 2]}).status_code == 204
        stored = direct.get(f"{L2_PREFIX}contract:mine")
        assert stored is not None and json.loads(stored) == [1, 2]
        ttl_ms = direct.pttl(f"{L2_PREFIX}contract:mine")
        assert ttl_ms > 0, "L2 entries carry a TTL"
    finally:
        direct.close()


def test_beneficios_write_read_and_audit(service: Service) -> None:
    """GET of an unknown id is 404; PUT writes PostgreSQL, answers with the row and the audit
    event (id + path), the audit row lands, and GET then serves the new value."""
    c = service.client
    missing = c.get("/beneficios/b-404")
    assert missing.status_code == 404, missing.text
    assert "b-404" in missing.json()["detail"]

    event_id = uuid.uuid4()
    put = c.put(
        "/beneficios/b-1",
        json={"nome": "Auxílio", "valor": 1500, "v": 3, "event_id": str(event_id), "actor": "ana"},
    )
    assert put.status_code == 200, put.text
    body = put.json()
    assert body["id"] == "b-1" and body["nome"] == "Auxílio"
    assert body["valor"] == 1500 and body["v"] == 3
    assert body["audit"] == {"event_id": str(event_id), "path": "queue"}

    with psycopg.connect(service.stack.urls.database_direct_url, autocommit=True) as db:
        row = db.execute("SELECT nome, valor, v FROM beneficios WHERE id = 'b-1'").fetchone()
    assert row == ("Auxílio", 1500, 3)

    rows = wait_until(
        lambda: audit_rows(service.stack).get(event_id), DELIVERY_BOUND_S, what="audit row"
    )
    assert rows == 1
    with psycopg.connect(service.stack.urls.database_direct_url, autocommit=True) as db:
        audit = db.execute(
            "SELECT actor, action, entity, entity_id, payload FROM audit_log WHERE event_id = %s",
            (event_id,),
        ).fetchone()
    assert audit is not None
    assert audit[:4] == ("ana", "beneficio.update", "beneficio", "b-1")
    assert audit[4] == {"nome": "Auxílio", "valor": 1500, "v": 3}

    got = c.get("/beneficios/b-1")
    assert got.status_code == 200, got.text
    assert got.json()["valor"] == 1500
    assert got.json()["source"] in ("l1", "l2", "loader")

    second = c.put("/beneficios/b-1", json={"nome": "Auxílio", "valor": 1600})
    assert second.status_code == 200, second.text
    new_event = uuid.UUID(second.json()["audit"]["event_id"])
    assert new_event != event_id, "without event_id the service generates one"
    assert c.get("/beneficios/b-1").json()["valor"] == 1600, "the cache was refreshed"


def test_audit_post_accepted_on_the_queue_and_lands_once(service: Service) -> None:
    """POST /audit -> 202 {event_id, path: queue}; the worker writes it to audit_log once,
    and a retry of the same event_id is accepted again without a second row."""
    body = audit_body()
    first = service.post_audit(body)
    assert first.status_code == 202, first.text
    assert first.json() == {"event_id": body["event_id"], "path": "queue"}
    retry = service.post_audit(body)
    assert retry.status_code == 202, retry.text

    event_id = uuid.UUID(body["event_id"])
    wait_until(lambda: event_id in audit_rows(service.stack), DELIVERY_BOUND_S, what="row")
    service.drain()
    assert audit_rows(service.stack) == {event_id: 1}


def test_health_resilience_and_metrics_shapes(service: Service) -> None:
    """/health, /resilience (the seed's shape) and /metrics (Prometheus text) on a healthy
    stack, after some cache and audit traffic."""
    c = service.client
    c.put("/cache/shape", json={"value": 1})
    c.get("/cache/shape")
    c.get("/cache/shape-miss")
    assert service.post_audit().status_code == 202

    health = c.get("/health")
    assert health.status_code == 200, health.text
    # One probe (150 ms timeout here) may miss on a loaded machine: wait for the next.
    h = service.wait_status("HEALTHY")
    assert h["circuit"] == "CLOSED"
    for dep in ("redis", "database"):
        assert h[dep]["ok"] is True
        assert isinstance(h[dep]["latency_ms"], int | float)
        assert h[dep]["error"] is None

    resilience = c.get("/resilience")
    assert resilience.status_code == 200, resilience.text
    r = resilience.json()
    assert set(r) >= {"redis", "cache", "auditoria", "overall_health"}
    assert set(r["redis"]) >= {"failures", "lastFailure", "circuitState"}
    assert set(r["cache"]) >= {"hitRateL1", "hitRateL2", "fallbackUsage"}
    assert set(r["auditoria"]) >= {"queueFailures", "syncFallbacks", "fileBackups"}
    assert r["redis"] == {"failures": 0, "lastFailure": None, "circuitState": "CLOSED"}
    assert 0.0 < r["cache"]["hitRateL1"] <= 1.0
    assert all(0.0 <= r["cache"][k] <= 1.0 for k in ("hitRateL2", "fallbackUsage"))
    assert r["auditoria"]["queueFailures"] == 0
    assert r["auditoria"]["syncFallbacks"] == 0 and r["auditoria"]["fileBackups"] == 0
    assert r["overall_health"] == "HEALTHY"

    metrics = c.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    for name in (
        'stormproof_cache_hits_total{tier="l1"}',
        'stormproof_cache_hits_total{tier="l2"}',
        "stormproof_cache_misses_total",
        "stormproof_cache_stale_served_total",
        "stormproof_cache_l2_errors_total",
        'stormproof_breaker_state{breaker="redis"} 0.0',
        'stormproof_breaker_state{breaker="database"} 0.0',
        "stormproof_breaker_transitions_total",
        'stormproof_audit_events_total{path="queue"}',
        "stormproof_journal_backlog",
        "stormproof_recovery_replayed_total",
        "stormproof_redis_failures_total",
    ):
        assert name in text, f"{name} missing from /metrics"
    queue_line = next(
        line
        for line in text.splitlines()
        if line.startswith('stormproof_audit_events_total{path="queue"}')
    )
    assert float(queue_line.split()[-1]) >= 1.0


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/admin/recovery"), ("GET", "/admin/audit/backlog")]
)
def test_admin_endpoints_need_the_token(service: Service, method: str, path: str) -> None:
    """Without a token, with a wrong one, or with another scheme: 401 with a reason and
    WWW-Authenticate; with `Bearer <ADMIN_TOKEN>`: 200 and the contract's shape."""
    c = service.client
    refusals = [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"Authorization": ADMIN_TOKEN},
        {"Authorization": "Bearer"},
    ]
    for headers in refusals:
        response = c.request(method, path, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert "Bearer" in response.json()["detail"]
        assert response.headers.get("www-authenticate") == "Bearer"
        assert ADMIN_TOKEN not in response.text

    ok = c.request(method, path, headers=AUTH)
    assert ok.status_code == 200, ok.text
    expected = (
        {"replayed", "remaining"}
        if path == "/admin/recovery"
        else {"journal_pending", "queue_pending"}
    )
    body = ok.json()
    assert set(body) == expected
    assert all(isinstance(v, int) and v >= 0 for v in body.values())
