"""One way to make a Redis client for the reference: short timeouts, no hidden retries.

redis-py 8 retries failed commands (10 times by default): one GET against a black hole
took 6.6 s with a 0.2 s socket timeout. The breaker and the caller decide about retries,
so the client makes exactly one attempt per command.

Maintenance notifications are turned off: with redis-py 8.1's default ("auto", truthy)
the pool skips its check for dead connections and hands them out after an outage, each
failing one call (a failed trial call re-opens the breaker for another reset timeout).
See redis-py issues #4128 and #4156.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig

from reference.sentinel import FollowingConnection, SentinelConfig, make_sentinel_redis


def make_redis(
    url: str,
    timeout_s: float,
    *,
    password: str | None = None,
    max_connections: int = 64,
    decode_responses: bool = False,
    connection_class: type[AbstractConnection] | None = None,
    sentinel: SentinelConfig | None = None,
) -> aioredis.Redis:
    """An asyncio client: `timeout_s` for connect and for each command, zero retries.
    `connection_class` replaces the one the URL's scheme implies (it must fit the scheme:
    see `connection_class_for`). With `sentinel`, `url` is ignored: the client follows the
    primary the Sentinels name (reference/sentinel.py; `connection_class` must then derive
    from FollowingConnection)."""
    kwargs: dict[str, Any] = {
        "password": password or None,
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(NoBackoff(), 0),
        "retry_on_timeout": False,
        "retry_on_error": [],
        "health_check_interval": 0,
        "max_connections": max_connections,
        "decode_responses": decode_responses,
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
    }
    if sentinel is not None:
        return make_sentinel_redis(
            sentinel, kwargs, connection_class=connection_class or FollowingConnection
        )
    if connection_class is not None:
        kwargs["connection_class"] = connection_class
    return aioredis.Redis.from_url(url, **kwargs)


def connection_class_for(url: str) -> type[AbstractConnection]:
    """The connection class redis-py picks for `url`'s scheme (to subclass it)."""
    scheme = url.split("://", 1)[0].lower()
    if scheme == "unix":
        return UnixDomainSocketConnection
    if scheme == "rediss":
        return SSLConnection
    return Connection
