"""Redis behind Sentinel: find the primary, follow it after a failover, map its address.

With `REDIS_SENTINEL_URLS` and `REDIS_SENTINEL_MASTER` every Redis client of the service
asks the Sentinels for the primary (redis-py's `redis.asyncio.sentinel`) on each new
connection, instead of dialling `REDIS_URL`. After a failover a connection learns that
its node is no longer the primary and is dropped, so the next command reconnects to the
primary the Sentinels name, without a restart:

- `READONLY` (the node was demoted to a replica): redis-py drops the connection;
- `NOREPLICAS` (the node is cut off from its replicas: `min-replicas-to-write`): dropped
  too (a partitioned old primary refuses writes; the Sentinels may already name another);
- WAIT short of replicas (reference/audit/stream.py, the cache): the Sentinels are asked
  again (`recheck_primary`); when they name another primary, idle connections are closed;
- a connection released while the Sentinels name another primary is closed, so no pooled
  connection keeps reading from the old one; a connection held outside the pool (the L1
  invalidation subscription) is dropped by its holder when `off_primary` says so.

`REDIS_SENTINEL_ADDRESS_MAP` (`host:port=host:port,...`) maps the address a Sentinel
announces to the one this service must dial (NAT, a proxy, a container network): the
harness's Sentinels know every node by a proxy of their own (docs/redis-replication.md).
Each command is still one attempt; the breakers decide about retries.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

__all__ = [
    "Address",
    "FollowingConnection",
    "FollowingPool",
    "SentinelConfig",
    "make_sentinel_redis",
    "off_primary",
    "parse_address_map",
    "parse_sentinel_urls",
    "recheck_primary",
    "sentinel_config_from_env",
]

Address = tuple[str, int]
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelConfig:
    """Where the Sentinels are, the master's name, and the announced -> dialled map."""

    sentinels: tuple[Address, ...]
    master: str
    address_map: tuple[tuple[Address, Address], ...] = ()
    """(announced, dialled) pairs."""
    sentinel_password: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        """For logs and /settings: the Sentinels and the master (never the password)."""
        hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
        return f"sentinel://{hosts}/{self.master}"


def sentinel_config_from_env(
    read: Callable[[str], str | None], error: Callable[[str, str], Exception]
) -> SentinelConfig | None:
    """REDIS_SENTINEL_URLS, REDIS_SENTINEL_MASTER and REDIS_SENTINEL_ADDRESS_MAP (`read`
    gives a variable, None when unset) -> the config, None without Sentinels; a bad value
    raises `error(variable, problem)`."""
    urls, master, table = (
        read("REDIS_SENTINEL_URLS"),
        read("REDIS_SENTINEL_MASTER"),
        read("REDIS_SENTINEL_ADDRESS_MAP"),
    )
    if urls is None:
        for name, value in (
            ("REDIS_SENTINEL_MASTER", master),
            ("REDIS_SENTINEL_ADDRESS_MAP", table),
        ):
            if value is not None:
                raise error(name, "needs REDIS_SENTINEL_URLS")
        return None
    if master is None:
        raise error(
            "REDIS_SENTINEL_MASTER", "required with REDIS_SENTINEL_URLS (the master's name)"
        )
    try:
        sentinels, password = parse_sentinel_urls(urls)
    except ValueError as exc:
        raise error("REDIS_SENTINEL_URLS", str(exc)) from None
    try:
        address_map = parse_address_map(table or "")
    except ValueError as exc:
        raise error("REDIS_SENTINEL_ADDRESS_MAP", str(exc)) from None
    return SentinelConfig(sentinels, master, tuple(address_map.items()), password)


def parse_sentinel_urls(raw: str) -> tuple[tuple[Address, ...], str | None]:
    """`redis://[:password@]host[:port]` URLs, comma-separated -> addresses and the
    Sentinels' password (the first URL's). ValueError saying what is wrong."""
    addresses: list[Address] = []
    password = None
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            parts = urlsplit(item)
            port = parts.port or DEFAULT_SENTINEL_PORT
        except ValueError:
            raise ValueError(f"bad host or port in {_redacted(item)!r}") from None
        if parts.scheme != "redis" or not parts.hostname or "://" not in item:
            raise ValueError(f"expected redis://host:port URLs, got {_redacted(item)!r}")
        addresses.append((parts.hostname, port))
        password = password or parts.password
    if not addresses:
        raise ValueError("no Sentinel URL")
    return tuple(addresses), password


def parse_address_map(raw: str) -> dict[Address, Address]:
    """`host:port=host:port,...` -> {announced: dialled}; ValueError on a bad pair."""
    table: dict[Address, Address] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        announced, sep, dialled = item.partition("=")
        if not sep:
            raise ValueError(f"expected announced=dialled pairs, got {item!r}")
        table[_address(announced)] = _address(dialled)
    return table


def _address(text: str) -> Address:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, got {text.strip()!r}")
    return host, int(port)


def _redacted(url: str) -> str:
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


class MappedSentinel(Sentinel):
    """redis-py's Sentinel, with announced addresses mapped to the ones to dial."""

    def __init__(
        self, sentinels: Any, address_map: Mapping[Address, Address], **kwargs: Any
    ) -> None:
        super().__init__(sentinels, **kwargs)  # type: ignore[no-untyped-call]
        self._map = dict(address_map)

    def mapped(self, address: Any) -> Address:
        """The address to dial for an announced (host, port)."""
        host = address[0].decode() if isinstance(address[0], bytes) else str(address[0])
        key = (host, int(address[1]))
        return self._map.get(key, key)

    async def discover_master(self, service_name: str) -> Address:
        return self.mapped(await super().discover_master(service_name))

    async def discover_slaves(self, service_name: str) -> list[Address]:
        return [self.mapped(a) for a in await super().discover_slaves(service_name)]


class FollowingConnection(SentinelManagedConnection):
    """Drops itself when its node refuses writes as a primary cut off from its replicas
    (NOREPLICAS): the next connect asks the Sentinels again (READONLY: redis-py does)."""

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except ResponseError as exc:
            if self.connection_pool.is_master and str(exc).startswith("NOREPLICAS"):
                await self.disconnect()
                raise RedisConnectionError(f"the primary refuses writes ({exc})") from exc
            raise


class FollowingPool(SentinelConnectionPool):
    """Closes a released connection that is not on the primary the Sentinels named last
    (a connection busy during the switch would otherwise keep serving the old node)."""

    async def release(self, connection: AbstractConnection) -> None:
        if _elsewhere(self, connection):
            await connection.disconnect()
        await super().release(connection)


def off_primary(client: aioredis.Redis, connection: AbstractConnection | None) -> bool:
    """Whether `connection`, held outside the pool (a subscription's), is on another node
    than the primary the Sentinels last named to `client` (False when not behind Sentinel
    or not known yet). Its holder drops it: the Sentinels are asked again on reconnect."""
    pool = client.connection_pool
    return (
        connection is not None
        and isinstance(pool, SentinelConnectionPool)
        and _elsewhere(pool, connection)
    )


def _elsewhere(pool: SentinelConnectionPool, connection: AbstractConnection) -> bool:
    current = pool.master_address
    here = (getattr(connection, "host", None), getattr(connection, "port", None))
    return bool(pool.is_master) and current is not None and here != tuple(current)


async def recheck_primary(client: aioredis.Redis) -> None:
    """Ask the Sentinels again which node is primary (a client not behind Sentinel: no-op).
    When it changed, idle connections are closed and busy ones when released
    (FollowingPool), so the next command goes to the new primary. Called after WAIT saw
    too few replicas: a node cut off from its replicas may have been replaced already,
    while it still answers (errors are ignored: the caller is failing anyway)."""
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        with contextlib.suppress(RedisError, OSError):
            await pool.get_master_address()  # type: ignore[no-untyped-call]


class _OwningRedis(aioredis.Redis):
    """A client that closes its Sentinel connections with its own (redis-py leaves them
    open: the Sentinel object is not owned by the clients it makes)."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        if isinstance(manager, Sentinel):
            await manager.aclose()


def make_sentinel_redis(
    config: SentinelConfig,
    connection_kwargs: Mapping[str, Any],
    *,
    connection_class: type[AbstractConnection] = FollowingConnection,
) -> aioredis.Redis:
    """A client of the primary named by `config`'s Sentinels. `connection_kwargs` are the
    single-node client's (timeouts, no retries, pool size); the Sentinels get the same
    timeouts. `connection_class` must derive from FollowingConnection."""
    kwargs = dict(connection_kwargs)
    timeouts = {k: v for k, v in kwargs.items() if k.startswith("socket_")}
    sentinel_kwargs: dict[str, Any] = {**timeouts, "password": config.sentinel_password}
    sentinel = MappedSentinel(
        list(config.sentinels), dict(config.address_map), sentinel_kwargs=sentinel_kwargs
    )
    client: aioredis.Redis = sentinel.master_for(
        config.master,
        redis_class=_OwningRedis,
        connection_pool_class=FollowingPool,
        connection_class=connection_class,
        **kwargs,
    )
    return client
