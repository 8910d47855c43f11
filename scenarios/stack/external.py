"""A stack someone else runs (docker compose, CI services): URLs from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import psycopg
import redis

from scenarios.stack.base import POSTGRES_PROXY, REDIS_PROXY, Stack, StackUrls, track
from scenarios.stack.errors import StackError
from scenarios.toxiproxy import Toxiproxy, ToxiproxyError

CHECK_TIMEOUT_S = 3.0


def check_reachable(urls: StackUrls) -> None:
    """Fail with one line naming the first URL that does not answer."""
    for var, url in (("REDIS_DIRECT_URL", urls.redis_direct_url), ("REDIS_URL", urls.redis_url)):
        client = redis.Redis.from_url(
            url, socket_timeout=CHECK_TIMEOUT_S, socket_connect_timeout=CHECK_TIMEOUT_S
        )
        try:
            client.ping()
        except redis.RedisError as exc:
            raise StackError(f"{var} {url} unreachable: {exc}") from exc
        finally:
            client.close()
    for var, url in (
        ("DATABASE_DIRECT_URL", urls.database_direct_url),
        ("DATABASE_URL", urls.database_url),
    ):
        try:
            with psycopg.connect(url, connect_timeout=int(CHECK_TIMEOUT_S)) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise StackError(f"{var} unreachable: {str(exc).splitlines()[0]}") from exc


ENV_FILE_VAR = "STORMPROOF_STACK_ENV_FILE"


def open_external_stack(env: Mapping[str, str]) -> Stack:
    """Attach to running services; URLs from $STORMPROOF_STACK_ENV_FILE or the environment."""
    env_file = env.get(ENV_FILE_VAR)
    if env_file:
        from scenarios.stack.envfile import read_stack_urls

        urls = read_stack_urls(Path(env_file))
    else:
        urls = StackUrls.from_env(env)
    client = Toxiproxy(urls.toxiproxy_url, timeout_s=CHECK_TIMEOUT_S)
    try:
        client.version()
        names = set(client.proxies())
    except ToxiproxyError as exc:
        client.close()
        raise StackError(
            f"STORMPROOF_TOXIPROXY_URL {urls.toxiproxy_url} unreachable: {exc.answer}"
        ) from exc
    missing = {REDIS_PROXY, POSTGRES_PROXY} - names
    if missing:
        client.close()
        raise StackError(f"toxiproxy at {urls.toxiproxy_url} lacks the proxies {sorted(missing)}")
    try:
        check_reachable(urls)
    except StackError:
        client.close()
        raise
    return track(Stack(provider="external", urls=urls, toxiproxy=client))
