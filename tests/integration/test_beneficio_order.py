"""Concurrent `PUT /beneficios/{id}` leave no stale cache (issue 12, item 7).

Two instances share Redis and PostgreSQL. Instance A's Redis connection is slowed (upstream
latency, below A's operation timeout), so A's PUT commits first but reaches Redis last;
instance B's PUT of the same id, with a higher version, commits second. Every later GET,
through every instance, must return B's row: the database's order, not the cache's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from scenarios.ports import free_port
from scenarios.stack import Stack
from scenarios.toxiproxy import Proxy, ProxySpec
from tests.integration.service_support import ServiceFactory, wait_until

pytest_plugins = ["tests.integration.service_support"]
pytestmark = pytest.mark.integration

SLOW_MS = 1200


@pytest.fixture
def slow_redis_proxy(stormproof_stack: Stack) -> Iterator[Proxy]:
    """A second Redis proxy (for instance A only), deleted afterwards."""
    name = "redis.order-a"
    client = stormproof_stack.toxiproxy
    try:
        client.delete_proxy(name)
    except Exception:
        pass
    proxy = client.create_proxy(
        ProxySpec(name, f"127.0.0.1:{free_port()}", stormproof_stack.redis_proxy.upstream)
    )
    try:
        yield proxy
    finally:
        client.delete_proxy(name)


def _db_version(stack: Stack, beneficio_id: str) -> int | None:
    with psycopg.connect(stack.urls.database_direct_url, connect_timeout=5) as conn:
        try:
            row = conn.execute("SELECT v FROM beneficios WHERE id = %s", (beneficio_id,)).fetchone()
        except psycopg.errors.UndefinedTable:
            return None
    return None if row is None else int(row[0])


def test_the_later_version_wins_in_every_cache(
    stormproof_stack: Stack, service_factory: ServiceFactory, slow_redis_proxy: Proxy
) -> None:
    """A's PUT (v=1) commits, then its cache write is delayed; B's PUT (v=2) commits and
    caches at once; after both answered, GET through A and through B return v=2."""
    port = slow_redis_proxy.listen.rsplit(":", 1)[1]
    a = service_factory(REDIS_URL=f"redis://127.0.0.1:{port}/0", REDIS_OP_TIMEOUT_MS="4000")
    b = service_factory(reset=False)
    bid = "order-1"
    assert b.client.put(f"/beneficios/{bid}", json={"nome": "zero", "valor": 0, "v": 0}).is_success
    answer: dict[str, Any] = {}

    def put_a() -> None:
        with httpx.Client(base_url=a.url, timeout=20.0) as client:
            answer["a"] = client.put(f"/beneficios/{bid}", json={"nome": "A", "valor": 1, "v": 1})

    slow_redis_proxy.add_toxic("latency", {"latency": SLOW_MS, "jitter": 0}, stream="upstream")
    writer = threading.Thread(target=put_a)
    writer.start()
    try:
        wait_until(lambda: _db_version(stormproof_stack, bid) == 1, 10.0, 0.01, "A committed")
        response = b.client.put(f"/beneficios/{bid}", json={"nome": "B", "valor": 2, "v": 2})
        assert response.is_success, response.text
    finally:
        writer.join(30.0)
        for toxic in slow_redis_proxy.toxics():
            slow_redis_proxy.remove_toxic(toxic.name)
    assert answer["a"].is_success, answer["a"].text
    assert _db_version(stormproof_stack, bid) == 2
    time.sleep(0.5)  # invalidations in flight
    for name, service in (("A", a), ("B", b)):
        got = service.client.get(f"/beneficios/{bid}").json()
        assert (got["v"], got["nome"]) == (2, "B"), f"instance {name} serves {got}"
