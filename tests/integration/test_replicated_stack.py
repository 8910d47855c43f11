"""The replicated Redis of the local stack (issue 18), against real redis-server,
redis-sentinel and Toxiproxy: it starts settled, the reference's Sentinel client follows
a failover and its queue waits for a replica, and every process is stopped on every exit
path (a normal close and a start that fails half-way)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis

from reference.audit.event import AuditEvent
from reference.audit.stream import AuditQueue, NotReplicated
from reference.cache import JSON, CacheResult, HybridCache
from reference.config import Settings
from reference.redis_client import make_redis
from scenarios.pytest_plugin import unavailable
from scenarios.stack import Stack, StackError, open_stack
from scenarios.stack.base import install_sigterm_cleanup
from scenarios.stack.envfile import read_env_file
from scenarios.stack.local import LocalStack
from tests.cache_support import FAST_SUBSCRIBER, cache_settings, read_into_l1, redis_breaker
from tests.cache_support import make_cache as build_cache

pytestmark = pytest.mark.integration

STALENESS_BOUND_S = 3.0
"""The redis-partition scenario's bound on stale reads after a heal."""


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One replicated local stack for the module, closed at its end."""
    install_sigterm_cleanup()
    try:
        stack = open_stack(
            "local", base_dir=tmp_path_factory.mktemp("repl"), redis_mode="replicated"
        )
    except StackError as exc:
        unavailable(f"the replicated stack cannot start: {exc}")
        raise
    try:
        yield stack
    finally:
        stack.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _event() -> AuditEvent:
    return AuditEvent.new("t", "a", "e", "1", {})


async def _within(seconds: float, what: str, attempt: Callable[[], Awaitable[bool]]) -> None:
    """`attempt()` every 0.1 s until it is true; fails naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while not await attempt():
        assert time.monotonic() < deadline, f"{what} not within {seconds} s"
        await asyncio.sleep(0.1)


async def _published_within(queue: AuditQueue, seconds: float) -> None:
    async def published() -> bool:
        try:
            await queue.publish(_event())
        except Exception:
            return False
        return True

    await _within(seconds, "an acknowledged write", published)


def _client(stack: Stack, timeout_s: float = 0.5) -> redis.asyncio.Redis:
    settings = Settings.from_env(stack.urls.as_env())
    assert settings.redis_sentinels is not None
    return make_redis("redis://unused:1/0", timeout_s, sentinel=settings.redis_sentinels)


def test_the_stack_starts_settled_with_its_sentinel_settings(replicated: Stack) -> None:
    """Node 0 is primary with two replicas online; three Sentinels agree; stack.env gains
    the Sentinel settings; the primary refuses writes without a replica."""
    assert replicated.redis_set is not None
    assert replicated.redis_set.settled(require_primary=0) is None
    env = replicated.urls.as_env()
    assert len(env["REDIS_SENTINEL_URLS"].split(",")) == 3
    assert env["REDIS_SENTINEL_MASTER"] == "stormproof"
    assert len(env["REDIS_SENTINEL_ADDRESS_MAP"].split(",")) == 3
    direct = redis.Redis.from_url(replicated.urls.redis_direct_url, socket_timeout=5)
    try:
        assert direct.config_get("min-replicas-to-write") == {"min-replicas-to-write": "1"}
    finally:
        direct.close()
    assert {"redis", "redis.n1", "redis.n2", "sentinel.1", "sentinel.3"} <= set(replicated.services)


async def test_the_queue_waits_for_a_replica_and_follows_a_failover(replicated: Stack) -> None:
    """WAIT confirms a replica; with the primary cut from its replicas the event is not
    acknowledged (NotReplicated); after SIGKILL of the primary the same client writes to
    the promoted replica without a restart; the heal brings the old one back as a replica."""
    replicated.heal()
    client = _client(replicated)
    queue = AuditQueue(client, "audit:test", min_replicas=1, wait_timeout_s=0.2)
    try:
        await queue.publish(_event())
        # the replicas' acknowledgements dropped (their stream still flows), for 0.2 s
        proxy = replicated.proxy("redis.peer")
        with (
            proxy.toxic("timeout", stream="upstream", timeout=0),
            pytest.raises(NotReplicated),
        ):
            await queue.publish(_event())
        # dropping part of an acknowledgement breaks the replication link: the replicas
        # reconnect (a second or two), then writes are acknowledged again
        await _published_within(queue, 10.0)

        replicated.services["redis"].kill()
        await _published_within(queue, 20.0)  # down-after 1 s, then the promotion
        assert replicated.redis_set is not None
        assert replicated.redis_set.primary_index() in (1, 2)
    finally:
        await client.aclose()
    await asyncio.to_thread(replicated.heal)  # node 0 restarts, rejoins as a replica
    assert replicated.redis_set.settled() is None
    await asyncio.to_thread(replicated.redis_set.reset)
    assert replicated.redis_set.primary_index() == 0


async def _written_within(cache: HybridCache, key: str, value: JSON, seconds: float) -> None:
    """`cache.set` until L2 (and a replica) took it."""
    await _within(seconds, f"{key} written to L2", lambda: cache.set(key, value))


async def test_an_instance_l1_follows_a_failover_after_its_last_subscribe(
    replicated: Stack,
) -> None:
    """Both instances subscribe on the primary; then it is cut from the Sentinels and the
    replicas but not from the service, and a replica is promoted (the redis-partition
    scenario's failover landing after the subscribers' last resubscribe). Once B's client
    has learned the new primary (its write is refused by the old one), B's subscription
    follows within the bound, so A's write on the new primary is not served from B's L1.
    Before the fix B stayed subscribed to the old primary, which still answers, and kept
    its stale L1 entry until the heal (docs/DECISIONS.md, replicated Redis)."""
    replicated.heal()
    redis_set = replicated.redis_set
    assert redis_set is not None
    sentinels = Settings.from_env(replicated.urls.as_env()).redis_sentinels
    settings = cache_settings(
        redis_sentinels=sentinels,
        cache_min_replicas=1,
        breaker_failure_threshold=1000,  # no breaker recovery (it would flush L1 as well)
    )

    def cache(name: str) -> HybridCache:
        return build_cache(
            settings, redis_breaker(settings), timing=FAST_SUBSCRIBER, instance_id=name
        )

    async def promoted() -> bool:
        return await asyncio.to_thread(redis_set.primary_index) not in (0, None)

    key = f"k-{uuid.uuid4().hex[:6]}"
    try:
        async with cache("a") as cache_a, cache("b") as cache_b:
            for each in (cache_a, cache_b):
                assert await each.wait_subscribed(5.0)
            await _written_within(cache_a, key, {"v": 1}, 5.0)
            await read_into_l1(cache_b, key, {"v": 1})

            peer = replicated.proxy("redis.peer")
            with (
                peer.toxic("timeout", stream="upstream", timeout=0),
                peer.toxic("timeout", stream="downstream", timeout=0),
            ):
                await _within(30.0, "a replica promoted", promoted)
                # B learns the new primary from its own write (NOREPLICAS, or WAIT short of
                # a replica: the Sentinels asked again); A too, before it writes `key`
                await _written_within(cache_b, f"{key}-b", {"v": 0}, 15.0)
                await _written_within(cache_a, f"{key}-a", {"v": 0}, 15.0)
                await _written_within(cache_a, key, {"v": 2}, 5.0)
                deadline = time.monotonic() + STALENESS_BOUND_S
                while (found := await cache_b.get(key)) != CacheResult({"v": 2}, "l2"):
                    assert time.monotonic() < deadline, (
                        f"B still serves {found} {STALENESS_BOUND_S} s after A's write "
                        "on the new primary"
                    )
                    await asyncio.sleep(0.05)
    finally:
        await asyncio.to_thread(replicated.heal)
        await asyncio.to_thread(redis_set.reset)


def test_close_stops_every_process(
    replicated: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Nodes, Sentinels, PostgreSQL and Toxiproxy: none left after close (the module's
    stack, closed here, last; closing again at teardown is a no-op)."""
    pids = [s.pid for s in replicated.services.values() if s.pid is not None]
    assert len(pids) >= 8
    replicated.close()
    assert [p for p in pids if _alive(p)] == []
    assert _processes_mentioning(str(tmp_path_factory.getbasetemp() / "repl0")) == []


def test_a_failed_start_stops_what_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Sentinel that cannot start (here: `false`) fails the start with one line, after
    the nodes, PostgreSQL and Toxiproxy were started: all of them are stopped."""
    monkeypatch.setenv("STORMPROOF_REDIS_SENTINEL", "/bin/false")
    local = LocalStack(tmp_path, redis_mode="replicated")
    with pytest.raises(StackError, match=r"sentinel\.1 exited during start-up"):
        local.start()
    assert local.pids == []
    assert _processes_mentioning(str(tmp_path)) == []
    assert os.listdir(tmp_path) == []


@pytest.mark.nightly  # ~9 s; the daemon's teardown is the single-node stack's (test_stack_cli)
def test_stack_up_replicated_from_a_shell_and_down(tmp_path: Path) -> None:
    """`stormproof stack up --redis replicated`: stack.env has the Sentinel settings and a
    Sentinel there names node 0; `stack down` leaves no process (nodes, Sentinels) behind."""
    state = tmp_path / "state"
    cli = [sys.executable, "-m", "scenarios.cli", "stack"]
    up = subprocess.run(
        [*cli, "up", "--provider", "local", "--redis", "replicated", "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=150,
    )
    pids: list[int] = []
    try:
        if up.returncode != 0:
            unavailable(f"stack up --redis replicated failed: {up.stderr.strip()}")
        info = json.loads((state / "stack.json").read_text())
        pids = [info["pid"], *info["services"].values()]
        assert {"sentinel.1", "sentinel.2", "sentinel.3", "redis.n2"} <= set(info["services"])
        env = read_env_file(state / "stack.env")
        host, port = env["REDIS_SENTINEL_URLS"].split(",")[0].removeprefix("redis://").split(":")
        with redis.Redis(
            host=host, port=int(port), socket_timeout=2, decode_responses=True
        ) as sentinel:
            announced = sentinel.sentinel_get_master_addr_by_name(env["REDIS_SENTINEL_MASTER"])
        mapped = dict(pair.split("=") for pair in env["REDIS_SENTINEL_ADDRESS_MAP"].split(","))
        assert env["REDIS_URL"] == f"redis://{mapped[f'{announced[0]}:{announced[1]}']}/0"
    finally:
        down = subprocess.run(
            [*cli, "down", "--state-dir", str(state)], capture_output=True, text=True, timeout=60
        )
    assert down.stdout.strip() == "stack down", down.stdout
    assert pids and [p for p in pids if _alive(p)] == []
