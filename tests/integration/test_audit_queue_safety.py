"""The audit queue trusts only a Redis that can keep it (issue 12, item 2).

A stream in a Redis with `maxmemory-policy allkeys-*` can be evicted; with AOF off or
`appendfsync everysec` a restart drops acknowledged XADDs. The service checks Redis at
start-up and after every reconnect; when the queue cannot be durable there it does not use
it (the database or the journal take the events), and says so in /health, /resilience, the
gauge `stormproof_audit_queue_unsafe` and the alert AUDIT_QUEUE_UNSAFE. An explicit setting
accepts the risk; `AUDITORIA_REDIS_URL` gives the queue a Redis of its own.

The Redis settings are changed over the direct URL and put back after each test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis

from scenarios.redis_data import apply_redis_config
from scenarios.stack import Stack
from tests.integration.service_support import (
    ServiceFactory,
    audit_body,
    wait_until,
)

pytest_plugins = ["tests.integration.service_support"]
pytestmark = pytest.mark.integration

UNSAFE_GAUGE = "stormproof_audit_queue_unsafe"
CACHE_REDIS = {"maxmemory": "64mb", "maxmemory-policy": "allkeys-lru"}


@pytest.fixture
def redis_config(stormproof_stack: Stack) -> Iterator[Callable[[dict[str, str]], None]]:
    """`set(config)`: CONFIG SET on the stack's Redis; everything put back at teardown."""
    undo: list[Callable[[], None]] = []

    def set_config(config: dict[str, str]) -> None:
        undo.append(apply_redis_config(stormproof_stack.urls.redis_direct_url, config))

    try:
        yield set_config
    finally:
        for revert in reversed(undo):
            revert()


def _gauge(metrics_text: str) -> float | None:
    for line in metrics_text.splitlines():
        if line.startswith(UNSAFE_GAUGE + " ") or line.startswith(UNSAFE_GAUGE + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_cache_redis_is_not_used_for_the_queue_and_says_so(
    service_factory: ServiceFactory, redis_config: Callable[[dict[str, str]], None]
) -> None:
    """allkeys-lru: events go to the database, /health and /resilience say the queue is
    unsafe and unused, the gauge is 1 and the alert fires."""
    redis_config(CACHE_REDIS)
    service = service_factory(ALERT_COOLDOWN="60000")
    response = service.post_audit(audit_body())
    assert response.status_code == 202, response.text
    assert response.json()["path"] in ("db", "file"), response.json()
    queue = service.health().get("audit_queue")
    assert queue is not None, f"/health says nothing about the queue: {service.health()}"
    assert queue["safe"] is False and queue["used"] is False, queue
    assert any("maxmemory-policy" in p for p in queue["problems"]), queue
    auditoria = service.client.get("/resilience").json()["auditoria"]
    assert auditoria.get("queueUnsafe") is True and auditoria.get("queueInUse") is False
    assert _gauge(service.client.get("/metrics").text) == 1.0
    wait_until(
        lambda: "AUDIT_QUEUE_UNSAFE" in service.log_text(), 10.0, what="AUDIT_QUEUE_UNSAFE alert"
    )


def test_aof_off_or_everysec_is_unsafe_too(
    service_factory: ServiceFactory, redis_config: Callable[[dict[str, str]], None]
) -> None:
    """appendfsync everysec (a second of acknowledged XADDs lost on a crash): not used."""
    redis_config({"appendfsync": "everysec"})
    service = service_factory()
    assert service.post_audit(audit_body()).json()["path"] in ("db", "file")
    problems = service.health()["audit_queue"]["problems"]
    assert any("appendfsync" in p for p in problems), problems


def test_accepting_the_risk_uses_the_queue_and_still_reports_it(
    service_factory: ServiceFactory, redis_config: Callable[[dict[str, str]], None]
) -> None:
    """AUDITORIA_QUEUE_ACCEPT_UNSAFE=true: the queue is used; the gauge still says 1."""
    redis_config(CACHE_REDIS)
    service = service_factory(AUDITORIA_QUEUE_ACCEPT_UNSAFE="true")
    assert service.post_audit(audit_body()).json()["path"] == "queue"
    queue = service.health()["audit_queue"]
    assert queue["safe"] is False and queue["used"] is True, queue
    assert _gauge(service.client.get("/metrics").text) == 1.0


def test_a_safe_redis_is_used_and_rechecked_after_a_reconnect(
    stormproof_stack: Stack,
    service_factory: ServiceFactory,
    redis_config: Callable[[dict[str, str]], None],
) -> None:
    """Safe at start-up (queue, gauge 0); Redis reconfigured to a cache and the service's
    connections dropped: after reconnecting, the queue is no longer used."""
    service = service_factory()
    assert service.post_audit(audit_body()).json()["path"] == "queue"
    assert _gauge(service.client.get("/metrics").text) == 0.0
    redis_config(CACHE_REDIS)
    client = redis.Redis.from_url(stormproof_stack.urls.redis_direct_url, socket_timeout=5)
    try:
        client.client_kill_filter(_type="normal", skipme=True)
    finally:
        client.close()

    def moved_off_the_queue() -> bool:
        return bool(service.post_audit(audit_body()).json()["path"] != "queue")

    wait_until(moved_off_the_queue, 10.0, 0.3, "queue abandoned after the reconnect")
    assert service.health()["audit_queue"]["safe"] is False


def test_the_queue_can_have_a_redis_of_its_own(
    stormproof_stack: Stack, service_factory: ServiceFactory
) -> None:
    """AUDITORIA_REDIS_URL (here database 1 of the stack's Redis): the stream lives there,
    not in the cache's database."""
    queue_url = stormproof_stack.urls.redis_url.rsplit("/", 1)[0] + "/1"
    service = service_factory(AUDITORIA_REDIS_URL=queue_url)
    assert service.post_audit(audit_body()).json()["path"] == "queue"
    base = stormproof_stack.urls.redis_direct_url.rsplit("/", 1)[0]
    db0 = redis.Redis.from_url(base + "/0", socket_timeout=5)
    db1 = redis.Redis.from_url(base + "/1", socket_timeout=5)
    try:
        assert db1.exists("audit:events") == 1
        assert db0.exists("audit:events") == 0
    finally:
        db1.flushdb()
        db0.close()
        db1.close()
