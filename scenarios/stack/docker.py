"""The stack in containers (testcontainers): chosen when a Docker daemon answers."""

from __future__ import annotations

from typing import Any

from scenarios.stack.base import POSTGRES_PROXY, REDIS_PROXY, Stack, StackUrls, track
from scenarios.stack.errors import StackError
from scenarios.toxiproxy import ProxySpec, Toxiproxy

REDIS_IMAGE = "redis:7"
POSTGRES_IMAGE = "postgres:15"
TOXIPROXY_IMAGE = "ghcr.io/shopify/toxiproxy:2.12.0"
_PROXY_PORTS = {REDIS_PROXY: 16379, POSTGRES_PROXY: 15432}


def docker_unavailable_reason() -> str | None:
    """None when a Docker daemon answers, otherwise why not (one line)."""
    try:
        import docker
    except ImportError:
        return "the docker extra is not installed (pip install 'stormproof[docker]')"
    try:
        client = docker.from_env(timeout=3)
        client.ping()
        client.close()
    except Exception as exc:
        return f"no Docker daemon answers: {str(exc).splitlines()[0][:160]}"
    return None


class _DockerStack:
    def __init__(self) -> None:
        self._items: list[Any] = []

    def add(self, item: Any) -> Any:
        self._items.append(item)
        return item

    def close(self) -> None:
        for item in reversed(self._items):
            try:
                item.stop() if hasattr(item, "stop") else item.remove()
            except Exception:
                pass
        self._items = []


def _wait_for_postgres(url: str, timeout_s: float) -> None:
    import time

    import psycopg

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise StackError(f"docker provider: postgres not ready: {exc}") from exc
            time.sleep(0.2)


def open_docker_stack() -> Stack:
    """A stack in Docker containers (testcontainers); StackError when Docker is unavailable."""
    reason = docker_unavailable_reason()
    if reason:
        raise StackError(f"docker provider: {reason}")
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network
    from testcontainers.core.waiting_utils import wait_for_logs

    owner = _DockerStack()
    try:
        network = owner.add(Network().__enter__())
        redis_c = owner.add(
            DockerContainer(REDIS_IMAGE)
            .with_command("redis-server --appendonly yes --appendfsync always")
            .with_network(network)
            .with_network_aliases("redis")
            .with_exposed_ports(6379)
        )
        redis_c.start()
        wait_for_logs(redis_c, "Ready to accept connections", timeout=60)
        pg_c = owner.add(
            DockerContainer(POSTGRES_IMAGE)
            .with_env("POSTGRES_USER", "stormproof")
            .with_env("POSTGRES_DB", "stormproof")
            .with_env("POSTGRES_HOST_AUTH_METHOD", "trust")
            .with_network(network)
            .with_network_aliases("postgres")
            .with_exposed_ports(5432)
        )
        pg_c.start()
        # the image prints "ready" once during init and once for real: poll a connection
        _wait_for_postgres(
            f"postgresql://stormproof@{pg_c.get_container_host_ip()}:"
            f"{pg_c.get_exposed_port(5432)}/stormproof",
            60.0,
        )
        tp_c = owner.add(
            DockerContainer(TOXIPROXY_IMAGE)
            .with_network(network)
            .with_exposed_ports(8474, *_PROXY_PORTS.values())
        )
        tp_c.start()
        host = tp_c.get_container_host_ip()
        tp_url = f"http://{host}:{tp_c.get_exposed_port(8474)}"
        client = Toxiproxy(tp_url)
        client.populate(
            [
                ProxySpec(REDIS_PROXY, f"0.0.0.0:{_PROXY_PORTS[REDIS_PROXY]}", "redis:6379"),
                ProxySpec(
                    POSTGRES_PROXY, f"0.0.0.0:{_PROXY_PORTS[POSTGRES_PROXY]}", "postgres:5432"
                ),
            ]
        )
        urls = StackUrls(
            toxiproxy_url=tp_url,
            redis_url=f"redis://{host}:{tp_c.get_exposed_port(_PROXY_PORTS[REDIS_PROXY])}/0",
            database_url=(
                f"postgresql://stormproof@{host}:"
                f"{tp_c.get_exposed_port(_PROXY_PORTS[POSTGRES_PROXY])}/stormproof"
            ),
            redis_direct_url=f"redis://{host}:{redis_c.get_exposed_port(6379)}/0",
            database_direct_url=(
                f"postgresql://stormproof@{host}:{pg_c.get_exposed_port(5432)}/stormproof"
            ),
        )
    except StackError:
        owner.close()
        raise
    except Exception as exc:
        owner.close()
        raise StackError(f"docker provider: {str(exc).splitlines()[0][:200]}") from exc
    return track(Stack(provider="docker", urls=urls, toxiproxy=client, _closers=[owner]))
