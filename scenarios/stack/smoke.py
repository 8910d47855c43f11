"""Prove a stack works: each proxy carries traffic, and a fault on it is felt."""

from __future__ import annotations

import time

import psycopg
import redis

from scenarios.stack.base import Stack


def smoke_test(stack: Stack) -> list[str]:
    """Run the checks; returns one line per check, raises AssertionError on the first failure."""
    lines = []
    client = redis.Redis.from_url(stack.urls.redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        started = time.monotonic()
        assert client.ping(), "redis proxy: PING failed"
        lines.append(f"redis proxy carries traffic: PING in {_ms(started)}")
        with stack.redis_proxy.toxic("latency", latency=100):
            started = time.monotonic()
            client.ping()
            elapsed = time.monotonic() - started
            assert elapsed >= 0.1, "redis proxy: a 100 ms latency toxic was not felt"
        lines.append(
            f"redis proxy obeys toxics: PING with 100 ms latency in {elapsed * 1000:.0f} ms"
        )
    finally:
        client.close()
    started = time.monotonic()
    with psycopg.connect(stack.urls.database_url, connect_timeout=3) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,), "postgres proxy: SELECT 1 failed"
    lines.append(f"postgres proxy carries traffic: connect + SELECT 1 in {_ms(started)}")
    with stack.postgres_proxy.down():
        try:
            psycopg.connect(stack.urls.database_url, connect_timeout=2).close()
        except psycopg.OperationalError:
            lines.append("postgres proxy obeys down(): connection refused")
        else:
            raise AssertionError("postgres proxy: still connects while down")
    return lines


def _ms(started: float) -> str:
    return f"{(time.monotonic() - started) * 1000:.1f} ms"
