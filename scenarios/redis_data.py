"""Redis-side conditions a scenario sets up over the direct URL: configuration and filling.

- `apply_redis_config(url, config)`: CONFIG SET each parameter (e.g. a small `maxmemory`
  with `maxmemory-policy allkeys-lru`, a cache Redis) and return the function that puts the
  previous values back. A scenario asks for it with `stack = { redis_config = {...} }`.
- `fill_redis(url, mb)`: the `redis-fill` fault: write `mb` MB of throwaway keys (as a
  client filling the cache through `PUT /cache` would) and return the function that
  deletes whatever is left of them.

Both talk to Redis directly (never through Toxiproxy), with timeouts on every call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import redis

__all__ = ["FILL_PREFIX", "apply_redis_config", "fill_redis"]

FILL_PREFIX = "stormproof:fill:"
_CHUNK_BYTES = 64 * 1024
_TIMEOUT_S = 5.0
_MAX_FILL_MB = 256.0


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=_TIMEOUT_S, socket_connect_timeout=_TIMEOUT_S)


def apply_redis_config(url: str, config: Mapping[str, object]) -> Callable[[], None]:
    """CONFIG SET every `config` item; returns the revert (the previous values back)."""
    client = _client(url)
    previous: dict[str, str] = {}
    try:
        for name in config:
            reply = client.config_get(name)
            if name not in reply:
                raise ValueError(f"redis_config: Redis has no parameter {name!r}")
            previous[name] = str(reply[name])
        for name, value in config.items():
            client.config_set(name, str(value))
    except BaseException:
        for name, value in previous.items():
            client.config_set(name, value)
        client.close()
        raise
    client.close()

    def revert() -> None:
        undo = _client(url)
        try:
            for name, value in previous.items():
                undo.config_set(name, value)
        finally:
            undo.close()

    return revert


def fill_redis(url: str, mb: float) -> Callable[[], None]:
    """Write `mb` MB of 64 KB keys under FILL_PREFIX; returns the revert (delete them).

    Under `allkeys-*` eviction Redis evicts other keys to make room (what this fault is
    for); under `noeviction` the writes fail with OOM, which ends the fill quietly."""
    if not 0 < mb <= _MAX_FILL_MB:
        raise ValueError(f"redis-fill: mb must be in (0, {_MAX_FILL_MB:g}]")
    client = _client(url)
    chunk = b"x" * _CHUNK_BYTES
    try:
        pipe = client.pipeline(transaction=False)
        for n in range(max(1, round(mb * 1024 * 1024 / _CHUNK_BYTES))):
            pipe.set(f"{FILL_PREFIX}{n}", chunk)
            if n % 16 == 15:
                pipe.execute(raise_on_error=False)
        pipe.execute(raise_on_error=False)
    finally:
        client.close()

    def revert() -> None:
        undo = _client(url)
        try:
            keys = list(undo.scan_iter(match=f"{FILL_PREFIX}*", count=500))
            for start in range(0, len(keys), 500):
                undo.unlink(*keys[start : start + 500])
        finally:
            undo.close()

    return revert
