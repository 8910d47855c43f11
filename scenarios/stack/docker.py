"""The stack in containers (testcontainers), on the host's network: packets stay on loopback.

Every container joins the host network namespace (`network_mode=host`, never a bridge)
and listens on a free 127.0.0.1 port chosen here, so the URLs look like the local
provider's, Toxiproxy reaches Redis and PostgreSQL over loopback, and per-instance proxies
work. Redis and PostgreSQL are `ContainerService`s: process faults (sigkill, sigstop)
become `docker kill -s KILL` + `docker start` and `docker pause`/`unpause`.
Images: see docker_images.choose_images. Containers carry the label org.stormproof.stack.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

from scenarios.ports import free_port
from scenarios.stack.base import POSTGRES_PROXY, REDIS_PROXY, Stack, StackUrls, track
from scenarios.stack.container import ContainerService
from scenarios.stack.docker_images import DockerImages, choose_images
from scenarios.stack.errors import StackError
from scenarios.stack.local import DB_NAME, DB_USER, _postgres_ready, _redis_ready, _toxiproxy_ready
from scenarios.toxiproxy import ProxySpec, Toxiproxy

LABEL = "org.stormproof.stack"
START_TIMEOUT_S = 90.0
RYUK_ENV = "TESTCONTAINERS_RYUK_DISABLED"


def _unix_socket_refusal(env: Mapping[str, str]) -> str | None:
    """Why the daemon's unix socket refuses a connection, or None (also for TCP hosts).

    docker-py leaks the socket of a failed unix connect (a ResourceWarning): probe first.
    """
    host = env.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if not host.startswith("unix://"):
        return None
    path = host.removeprefix("unix://")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(3)
        try:
            probe.connect(path)
        except OSError as exc:
            return f"no Docker daemon answers at {path}: {exc.strerror or exc}"
    return None


def docker_unavailable_reason() -> str | None:
    """None when a Docker daemon answers, otherwise why not (one line)."""
    try:
        import docker
    except ImportError:
        return "the docker extra is not installed (pip install 'stormproof[docker]')"
    refusal = _unix_socket_refusal(os.environ)
    if refusal:
        return refusal
    try:
        client = docker.from_env(timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return f"no Docker daemon answers: {str(exc).splitlines()[0][:160]}"
    return None


class _Containers:
    """Owns the started containers; close() removes them (newest first)."""

    def __init__(self) -> None:
        self._items: list[Any] = []

    def add(self, item: Any) -> Any:
        self._items.append(item)
        return item

    def close(self) -> None:
        items, self._items = self._items, []
        for item in reversed(items):
            try:
                item.stop()  # testcontainers: docker rm -f (and its volumes)
            except Exception:
                pass


def _have_image(client: Any, name: str) -> bool:
    import docker

    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def _configure_ryuk(client: Any, env: Mapping[str, str]) -> None:
    """No Ryuk reaper unless its image is here (pulling it needs a registry); we clean up."""
    from testcontainers.core.config import testcontainers_config

    if RYUK_ENV not in env and not _have_image(client, testcontainers_config.ryuk_image):
        testcontainers_config.ryuk_disabled = True


def _host_container(image: str, command: list[str], env: Mapping[str, str] | None = None) -> Any:
    from testcontainers.core.container import DockerContainer

    container = DockerContainer(image).with_command(command)
    for key, value in (env or {}).items():
        container.with_env(key, value)
    return container.with_kwargs(network_mode="host", labels={LABEL: "docker"})


def open_docker_stack(env: Mapping[str, str] | None = None, *, redis_aof: bool = True) -> Stack:
    """Start Redis, PostgreSQL and Toxiproxy containers on free loopback ports."""
    env = os.environ if env is None else env
    reason = docker_unavailable_reason()
    if reason:
        raise StackError(f"docker provider: {reason}")
    import docker

    client = docker.from_env(timeout=30)
    owner = _Containers()
    try:
        images = choose_images(env, lambda name: _have_image(client, name))
        _configure_ryuk(client, env)
        return _start(owner, images, redis_aof)
    except StackError:
        owner.close()
        raise
    except Exception as exc:
        owner.close()
        raise StackError(f"docker provider: {str(exc).splitlines()[0][:200]}") from exc
    finally:
        client.close()


def _start(owner: _Containers, images: DockerImages, redis_aof: bool) -> Stack:
    redis_port, pg_port, tp_port = free_port(), free_port(), free_port()
    redis_direct = f"redis://127.0.0.1:{redis_port}/0"
    pg_direct = f"postgresql://{DB_USER}@127.0.0.1:{pg_port}/{DB_NAME}"
    tp_url = f"http://127.0.0.1:{tp_port}"

    redis_c = owner.add(
        _host_container(
            images.redis,
            # the audit guarantee depends on AOF with fsync on every write
            [
                *("redis-server", "--port", str(redis_port), "--bind", "127.0.0.1"),
                *("--appendonly", "yes" if redis_aof else "no", "--appendfsync", "always"),
                *("--save", "", "--protected-mode", "no", "--maxclients", "2000"),
            ],
        ).start()
    )
    redis_s = ContainerService(
        "redis", redis_c.get_wrapped_container(), lambda: _redis_ready(redis_direct)
    )
    pg_c = owner.add(
        _host_container(
            images.postgres,
            [
                *("postgres", "-c", "listen_addresses=127.0.0.1"),
                *("-c", "max_connections=300", "-c", "shared_buffers=64MB"),
            ],
            {
                "POSTGRES_USER": DB_USER,
                "POSTGRES_DB": DB_NAME,
                "POSTGRES_HOST_AUTH_METHOD": "trust",
                "PGPORT": str(pg_port),
            },
        ).start()
    )
    pg_s = ContainerService(
        "postgres", pg_c.get_wrapped_container(), lambda: _postgres_ready(pg_direct)
    )
    tp_c = owner.add(
        _host_container(
            images.toxiproxy,
            ["-host", "127.0.0.1", "-port", str(tp_port)],
            {"LOG_LEVEL": "warn"},  # as the local stack: no log line per connection
        ).start()
    )
    tp_s = ContainerService(
        "toxiproxy", tp_c.get_wrapped_container(), lambda: _toxiproxy_ready(tp_url)
    )
    redis_s.wait_ready(START_TIMEOUT_S)
    pg_s.wait_ready(START_TIMEOUT_S)
    tp_s.wait_ready(START_TIMEOUT_S)
    client = Toxiproxy(tp_url)
    redis_listen, pg_listen = free_port(), free_port()
    client.populate(
        [
            ProxySpec(REDIS_PROXY, f"127.0.0.1:{redis_listen}", f"127.0.0.1:{redis_port}"),
            ProxySpec(POSTGRES_PROXY, f"127.0.0.1:{pg_listen}", f"127.0.0.1:{pg_port}"),
        ]
    )
    urls = StackUrls(
        toxiproxy_url=tp_url,
        redis_url=f"redis://127.0.0.1:{redis_listen}/0",
        database_url=f"postgresql://{DB_USER}@127.0.0.1:{pg_listen}/{DB_NAME}",
        redis_direct_url=redis_direct,
        database_direct_url=pg_direct,
    )
    services = {"redis": redis_s, "postgres": pg_s}
    return track(
        Stack(provider="docker", urls=urls, toxiproxy=client, services=services, _closers=[owner])
    )
