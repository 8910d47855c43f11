"""The local stack's proxies carry traffic and really misbehave when told to."""

from __future__ import annotations

import time

import psycopg
import pytest
import redis

from scenarios.stack import Stack
from scenarios.toxiproxy import Proxy

pytestmark = pytest.mark.integration


def _redis(url: str, timeout_s: float = 1.0) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry_on_timeout=False,
        retry=None,
    )


def test_redis_ping_through_proxy(stormproof_stack: Stack) -> None:
    """PING answers through the `redis` proxy."""
    client = _redis(stormproof_stack.urls.redis_url)
    assert client.ping() is True
    client.close()


def test_redis_latency_toxic_delays_get(stormproof_stack: Stack, redis_proxy: Proxy) -> None:
    """With a 200 ms latency toxic, a GET takes at least 200 ms; without it, far less."""
    client = _redis(stormproof_stack.urls.redis_url)
    client.ping()
    with redis_proxy.toxic("latency", latency=200):
        started = time.monotonic()
        client.get("k")
        slow = time.monotonic() - started
    started = time.monotonic()
    client.get("k")
    fast = time.monotonic() - started
    client.close()
    assert slow >= 0.2
    assert fast < 0.1


def test_redis_proxy_down_refuses_connections(stormproof_stack: Stack, redis_proxy: Proxy) -> None:
    """A disabled proxy refuses connections; re-enabled, it carries traffic again."""
    with redis_proxy.down():
        client = _redis(stormproof_stack.urls.redis_url)
        with pytest.raises(redis.ConnectionError):
            client.ping()
        client.close()
    client = _redis(stormproof_stack.urls.redis_url)
    assert client.ping() is True
    client.close()


def test_redis_black_hole_times_out_then_reset_heals(
    stormproof_stack: Stack, redis_proxy: Proxy
) -> None:
    """A `timeout` toxic of 0 swallows data: a GET with a 300 ms timeout times out; /reset heals."""
    redis_proxy.add_toxic("timeout", {"timeout": 0})
    client = _redis(stormproof_stack.urls.redis_url, timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        client.get("k")
    assert time.monotonic() - started < 1.0
    client.close()
    stormproof_stack.toxiproxy.reset()
    client = _redis(stormproof_stack.urls.redis_url, timeout_s=0.3)
    assert client.get("k") is None
    client.close()


def test_postgres_select_through_proxy(stormproof_stack: Stack) -> None:
    """SELECT 1 answers through the `postgres` proxy."""
    with psycopg.connect(stormproof_stack.urls.database_url, connect_timeout=3) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_postgres_down_fails_within_connect_timeout(
    stormproof_stack: Stack, postgres_proxy: Proxy
) -> None:
    """With the proxy down, connecting fails within the client's connect timeout; reset heals."""
    with postgres_proxy.down():
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(stormproof_stack.urls.database_url, connect_timeout=2)
        assert time.monotonic() - started < 2.5
    stormproof_stack.toxiproxy.reset()
    with psycopg.connect(stormproof_stack.urls.database_url, connect_timeout=3) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_direct_urls_bypass_toxiproxy(stormproof_stack: Stack) -> None:
    """The direct URLs keep working while both proxies are down."""
    with stormproof_stack.redis_proxy.down(), stormproof_stack.postgres_proxy.down():
        client = _redis(stormproof_stack.urls.redis_direct_url)
        assert client.ping() is True
        client.close()
        with psycopg.connect(stormproof_stack.urls.database_direct_url, connect_timeout=3) as c:
            assert c.execute("SELECT 1").fetchone() == (1,)


def test_redis_sigkill_and_restart_keeps_aof_data(stormproof_stack: Stack) -> None:
    """Redis runs with appendfsync always: a SIGKILL loses no acknowledged write."""
    client = _redis(stormproof_stack.urls.redis_direct_url)
    client.set("stack:aof", "kept")
    client.close()
    service = stormproof_stack.services["redis"]
    old_pid = service.pid
    service.kill()
    assert not service.running
    service.start()
    assert service.pid != old_pid
    client = _redis(stormproof_stack.urls.redis_direct_url)
    assert client.get("stack:aof") == b"kept"
    client.close()


def test_postgres_sigkill_and_restart(stormproof_stack: Stack) -> None:
    """PostgreSQL killed with its backends comes back (crash recovery) with committed rows."""
    url = stormproof_stack.urls.database_direct_url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS stack_kill (v int)")
        conn.execute("INSERT INTO stack_kill VALUES (7)")
    stormproof_stack.services["postgres"].kill()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=1)
    stormproof_stack.services["postgres"].start()
    with psycopg.connect(url, autocommit=True) as conn:
        assert (7,) in conn.execute("SELECT v FROM stack_kill").fetchall()
