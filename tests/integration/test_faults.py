"""Every fault kind really happens on the real stack and is fully reverted."""

from __future__ import annotations

import time

import pytest
import redis

from scenarios.faults import (
    DISK_KINDS,
    KINDS,
    NETWORK_KINDS,
    FaultError,
    FaultInjector,
    FaultSpec,
)
from scenarios.stack import Stack

pytestmark = pytest.mark.integration


def _client(stack: Stack, timeout_s: float = 0.5) -> redis.Redis:
    return redis.Redis.from_url(
        stack.urls.redis_url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=None,
    )


def _ping_ok(stack: Stack) -> bool:
    client = _client(stack)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


@pytest.mark.parametrize("kind", [k for k in NETWORK_KINDS if k != "flapping"])
def test_network_fault_applies_and_reverts(stormproof_stack: Stack, kind: str) -> None:
    """Each toxic/down fault changes the proxy, and revert leaves it enabled with no toxics."""
    injector = FaultInjector.on_stack(stormproof_stack)
    spec = injector.apply(FaultSpec(kind, "redis"))
    proxy = stormproof_stack.redis_proxy.refresh()
    assert (not proxy.enabled) if kind == "down" else len(proxy.toxics()) >= 1
    injector.revert(spec)
    proxy = proxy.refresh()
    assert proxy.enabled and proxy.toxics() == []
    assert _ping_ok(stormproof_stack)


def test_blackhole_swallows_requests(stormproof_stack: Stack) -> None:
    """Under a black hole, a GET times out instead of failing fast."""
    injector = FaultInjector.on_stack(stormproof_stack)
    injector.apply(FaultSpec("blackhole", "redis"))
    try:
        client = _client(stormproof_stack, 0.3)
        with pytest.raises(redis.TimeoutError):
            client.get("x")
        client.close()
    finally:
        assert injector.revert_all() == []
    assert _ping_ok(stormproof_stack)


def test_flapping_alternates_then_reverts(stormproof_stack: Stack) -> None:
    """Flapping toggles the proxy with its period; revert leaves it enabled."""
    injector = FaultInjector.on_stack(stormproof_stack)
    injector.apply(FaultSpec("flapping", "redis", {"period_s": 0.4}))
    seen: set[bool] = set()
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and len(seen) < 2:
        seen.add(stormproof_stack.redis_proxy.refresh().enabled)
        time.sleep(0.05)
    injector.revert_all()
    assert seen == {True, False}
    assert stormproof_stack.redis_proxy.refresh().enabled


def test_sigkill_restarts_on_revert(stormproof_stack: Stack) -> None:
    """SIGKILL stops Redis; revert starts it again on the same port."""
    injector = FaultInjector.on_stack(stormproof_stack)
    spec = injector.apply(FaultSpec("sigkill", "redis"))
    assert not stormproof_stack.services["redis"].running
    assert not _ping_ok(stormproof_stack)
    injector.revert(spec)
    assert _ping_ok(stormproof_stack)


def test_sigstop_pauses_until_revert(stormproof_stack: Stack) -> None:
    """SIGSTOP freezes Redis (requests time out); SIGCONT on revert brings it back."""
    injector = FaultInjector.on_stack(stormproof_stack)
    injector.apply(FaultSpec("sigstop", "redis"))
    try:
        assert not _ping_ok(stormproof_stack)
    finally:
        injector.revert_all()
    assert _ping_ok(stormproof_stack)


def test_revert_all_survives_errors_and_empties(stormproof_stack: Stack) -> None:
    """revert_all undoes everything even when one revert fails, and reports the failure."""
    injector = FaultInjector.on_stack(stormproof_stack)
    injector.apply(FaultSpec("latency", "postgres", {"latency": 10}))
    injector.apply(FaultSpec("down", "redis"))
    stormproof_stack.toxiproxy.request(
        "DELETE", "/proxies/postgres/toxics/" + stormproof_stack.postgres_proxy.toxics()[0].name
    )
    assert injector.revert_all() == []  # a toxic already gone is not an error
    assert injector.active == []
    assert stormproof_stack.redis_proxy.refresh().enabled


@pytest.mark.parametrize(
    ("name", "params", "problem"),
    [
        ("redis-meteor", {}, "unknown fault"),
        ("target-latency", {}, "cannot target"),
        ("redis-latency", {"latency": -5}, "must not be negative"),
        ("redis-latency", {"speed": 5}, "unknown parameter"),
        ("redis", {}, "TARGET-KIND"),
    ],
)
def test_invalid_fault_specs_are_refused(name: str, params: dict[str, int], problem: str) -> None:
    """Bad fault specs fail validation with a line saying what is wrong."""
    with pytest.raises(FaultError, match=problem):
        FaultSpec.parse(name, params)


def test_every_kind_is_documented_by_validation() -> None:
    """Every known kind validates on some target."""
    for kind in KINDS:
        target = "journal" if kind in DISK_KINDS else "redis"
        assert FaultSpec(kind, target).validate().kind == kind


@pytest.mark.parametrize("stream", ["upstream", "downstream"])
def test_a_one_way_fault_is_a_toxic_on_that_stream_only(
    stormproof_stack: Stack, stream: str
) -> None:
    """`stream` makes a toxic fault one-way: a blackhole (both ways by default) becomes
    one toxic on the given stream; reverting removes it."""
    injector = FaultInjector.on_stack(stormproof_stack)
    both = injector.apply(FaultSpec("blackhole", "postgres"))
    proxy = stormproof_stack.postgres_proxy.refresh()
    assert sorted(t.stream for t in proxy.toxics()) == ["downstream", "upstream"]
    injector.revert(both)
    one_way = injector.apply(FaultSpec("blackhole", "postgres", {"stream": stream}))
    try:
        toxics = stormproof_stack.postgres_proxy.refresh().toxics()
        assert [(t.type, t.stream) for t in toxics] == [("timeout", stream)]
    finally:
        injector.revert(one_way)
    assert stormproof_stack.postgres_proxy.refresh().toxics() == []
