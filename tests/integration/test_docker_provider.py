"""The docker provider on a real engine: host networking only, process faults as docker ops."""

from __future__ import annotations

import time
from collections.abc import Iterator

import docker
import psycopg
import pytest
import redis

from scenarios.faults import FaultInjector, FaultSpec
from scenarios.stack import Stack, open_stack
from scenarios.stack.docker import LABEL
from tests.integration.docker_support import docker_ids, require_docker

pytestmark = [pytest.mark.docker, pytest.mark.integration]


@pytest.fixture(scope="module")
def docker_stack() -> Iterator[Stack]:
    require_docker()
    networks, containers = set(docker_ids("network", "")), set(docker_ids("ps"))
    with open_stack("docker") as stack:
        ours = set(docker_ids("ps")) - containers
        assert len(ours) == 3
        yield stack
    assert not ours & set(docker_ids("ps")), "the docker provider left containers"
    assert set(docker_ids("network", "")) == networks, "the docker provider made a network"


def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1, retry=None)


def test_containers_share_the_host_network_on_loopback(docker_stack: Stack) -> None:
    """Redis, PostgreSQL and Toxiproxy run with network_mode=host, every URL on 127.0.0.1."""
    client = docker.from_env()
    try:
        containers = client.containers.list(filters={"label": LABEL})
        modes = sorted(c.attrs["HostConfig"]["NetworkMode"] for c in containers)
    finally:
        client.close()
    assert modes == ["host", "host", "host"]
    for url in docker_stack.urls.as_env().values():
        assert "127.0.0.1:" in url, url
    for proxy in docker_stack.toxiproxy.proxies().values():
        assert proxy.upstream.startswith("127.0.0.1:") and proxy.listen.startswith("127.0.0.1:")


def test_sigkill_of_redis_kills_the_container_and_aof_keeps_writes(docker_stack: Stack) -> None:
    """`redis-sigkill`: Redis stops answering (container exited), restart keeps every write."""
    client = _redis(docker_stack.urls.redis_direct_url)
    client.set("acknowledged", "yes")
    injector = FaultInjector.on_stack(docker_stack)
    spec = injector.apply(FaultSpec("sigkill", "redis"))
    try:
        assert not docker_stack.services["redis"].running
        with pytest.raises(redis.ConnectionError):
            client.ping()
    finally:
        injector.revert(spec)
    assert docker_stack.services["redis"].running
    assert _redis(docker_stack.urls.redis_direct_url).get("acknowledged") == b"yes"


def test_sigstop_of_postgres_freezes_it_until_resumed(docker_stack: Stack) -> None:
    """`postgres-sigstop` is docker pause: a connection times out; after revert it answers."""
    injector = FaultInjector.on_stack(docker_stack)
    spec = injector.apply(FaultSpec("sigstop", "postgres"))
    try:
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(docker_stack.urls.database_direct_url, connect_timeout=2)
        assert time.monotonic() - started >= 1.5  # a timeout, not a refusal
    finally:
        injector.revert(spec)
    with psycopg.connect(docker_stack.urls.database_direct_url, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_heal_restarts_a_killed_service(docker_stack: Stack) -> None:
    """A killed container left down (restart=false) is started again by stack.heal()."""
    injector = FaultInjector.on_stack(docker_stack)
    injector.apply(FaultSpec("sigkill", "postgres", {"restart": False}))
    injector.revert_all()
    assert not docker_stack.services["postgres"].running
    docker_stack.heal()
    with psycopg.connect(docker_stack.urls.database_url, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
