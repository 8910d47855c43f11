"""Replicated Redis, pure logic: the Sentinel settings, the address map, the failover time
figure, the replicated stack's fault targets and scenario option (issue 18)."""

from __future__ import annotations

import pytest

from reference.config import ConfigError, Settings
from reference.redis_client import make_redis
from reference.sentinel import (
    FollowingConnection,
    FollowingPool,
    MappedSentinel,
    SentinelConfig,
    off_primary,
    parse_address_map,
    parse_sentinel_urls,
)
from scenarios.checkers.queue_failover import queue_failover
from scenarios.faults import FaultError, FaultSpec
from scenarios.history import FaultWindow, Op
from scenarios.run.catalogue import load_catalogue
from scenarios.run.scenario import ScenarioError, parse_scenario

SENTINELS = "redis://127.0.0.1:26379,redis://:s3cret-pass@10.0.0.2:26380,redis://sentinel-3"


def test_sentinel_settings_are_parsed() -> None:
    """URLs (the default port 26379, the password of the URL that has one), the master's
    name, the announced=dialled map and both WAIT settings."""
    settings = Settings.from_env(
        {
            "REDIS_SENTINEL_URLS": SENTINELS,
            "REDIS_SENTINEL_MASTER": "mymaster",
            "REDIS_SENTINEL_ADDRESS_MAP": "10.0.0.5:6379=127.0.0.1:7001, 10.0.0.6:6379=h:7002",
            "AUDITORIA_QUEUE_MIN_REPLICAS": "1",
            "CACHE_MIN_REPLICAS": "2",
        }
    )
    config = settings.redis_sentinels
    assert config is not None
    assert config.sentinels == (
        ("127.0.0.1", 26379),
        ("10.0.0.2", 26380),
        ("sentinel-3", 26379),
    )
    assert config.master == "mymaster"
    assert config.sentinel_password == "s3cret-pass"
    assert dict(config.address_map) == {
        ("10.0.0.5", 6379): ("127.0.0.1", 7001),
        ("10.0.0.6", 6379): ("h", 7002),
    }
    assert (settings.audit_queue_min_replicas, settings.cache_min_replicas) == (1, 2)


def test_without_sentinels_nothing_changes() -> None:
    """No REDIS_SENTINEL_URLS: a single Redis (REDIS_URL), no WAIT by default."""
    settings = Settings.from_env({})
    assert settings.redis_sentinels is None
    assert (settings.audit_queue_min_replicas, settings.cache_min_replicas) == (0, 0)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"REDIS_SENTINEL_URLS": "redis://h:26379"}, "REDIS_SENTINEL_MASTER"),
        ({"REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINEL_MASTER"),
        ({"REDIS_SENTINEL_ADDRESS_MAP": "a:1=b:2"}, "REDIS_SENTINEL_ADDRESS_MAP"),
        (
            {"REDIS_SENTINEL_URLS": "http://h:26379", "REDIS_SENTINEL_MASTER": "m"},
            "REDIS_SENTINEL_URLS",
        ),
        (
            {"REDIS_SENTINEL_URLS": "redis://h:99999", "REDIS_SENTINEL_MASTER": "m"},
            "REDIS_SENTINEL_URLS",
        ),
        (
            {
                "REDIS_SENTINEL_URLS": "redis://h",
                "REDIS_SENTINEL_MASTER": "m",
                "REDIS_SENTINEL_ADDRESS_MAP": "a:1-b:2",
            },
            "REDIS_SENTINEL_ADDRESS_MAP",
        ),
        ({"AUDITORIA_QUEUE_MIN_REPLICAS": "-1"}, "AUDITORIA_QUEUE_MIN_REPLICAS"),
        ({"CACHE_MIN_REPLICAS": "one"}, "CACHE_MIN_REPLICAS"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(env: dict[str, str], variable: str) -> None:
    """One line, naming the variable, never the Sentinel password."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable}: ")
    assert "\n" not in str(caught.value)


def test_the_sentinel_password_is_never_shown() -> None:
    """Neither the settings' repr nor a URL error echoes the password."""
    settings = Settings.from_env({"REDIS_SENTINEL_URLS": SENTINELS, "REDIS_SENTINEL_MASTER": "m"})
    assert "s3cret-pass" not in repr(settings)
    assert "sentinel://127.0.0.1:26379" in repr(settings)
    with pytest.raises(ValueError) as caught:
        parse_sentinel_urls("redis://:s3cret-pass@h:1:2")
    assert "s3cret-pass" not in str(caught.value)


def test_the_address_map_rejects_what_it_cannot_read() -> None:
    """Every pair is host:port=host:port with a port in range."""
    assert parse_address_map("") == {}
    for bad in ("a:1", "a=b:2", "a:1=b:0", "a:x=b:2"):
        with pytest.raises(ValueError):
            parse_address_map(bad)


def test_announced_addresses_are_mapped_and_unknown_ones_kept() -> None:
    """What a Sentinel announces is dialled through the map; an address not in the map
    is dialled as announced."""
    sentinel = MappedSentinel([("127.0.0.1", 1)], {("10.0.0.5", 6379): ("127.0.0.1", 7001)})
    assert sentinel.mapped((b"10.0.0.5", "6379")) == ("127.0.0.1", 7001)
    assert sentinel.mapped(("10.0.0.9", 6379)) == ("10.0.0.9", 6379)


async def test_a_held_connection_is_off_primary_once_the_pool_learned_another() -> None:
    """A subscription's connection is "off primary" only behind Sentinel and once the
    client's pool was told of a primary other than the node it is on (issue 18's
    redis-partition defect: the subscription stayed on the old primary)."""
    config = SentinelConfig((("127.0.0.1", 1),), "m")
    client = make_redis("redis://unused:1/0", 0.1, sentinel=config)
    single = make_redis("redis://127.0.0.1:1/0", 0.1)
    pool = client.connection_pool
    assert isinstance(pool, FollowingPool)
    try:
        held = FollowingConnection(connection_pool=pool, host="127.0.0.1", port=7001)  # type: ignore[no-untyped-call]
        assert not off_primary(client, held)  # no primary named yet
        pool.master_address = ("127.0.0.1", 7001)
        assert not off_primary(client, held)
        assert not off_primary(client, None)
        pool.master_address = ("127.0.0.1", 7002)
        assert off_primary(client, held)
        assert not off_primary(single, held)
    finally:
        await client.aclose()
        await single.aclose()


def _op(start: float, path: str | None, outcome: str = "ok") -> Op:
    response = {"path": path} if path else None
    return Op(0, 1, "audit", None, {}, response, start, start + 0.01, outcome)  # type: ignore[arg-type]


def _path(response: object) -> str:
    return str(response["path"]) if isinstance(response, dict) else "unknown"


def test_failover_time_runs_from_the_first_refused_queue_write_to_the_next_taken() -> None:
    """Before the Redis fault nothing counts; a write the journal took or a refused one is
    a queue failure; the first queue acknowledgement after it ends the failover."""
    window = FaultWindow("redis-sigkill", "redis", 2.0, 6.0, "sigkill")
    other = FaultWindow("postgres-down", "postgres", 1.0, 8.0, "down")
    ops = [
        _op(1.5, "file"),  # before the Redis fault
        _op(2.1, "queue"),
        _op(2.5, "file"),  # the first the queue did not take
        _op(3.0, None, outcome="fail"),
        _op(4.0, "queue"),
        _op(5.0, "queue"),
    ]
    figure = queue_failover(ops, [other, window], _path)
    assert figure == {
        "fault": "redis-sigkill",
        "first_failed_s": 2.5,
        "queue_back_s": 4.01,
        "failover_s": 1.51,
    }


def test_failover_time_is_none_when_the_queue_never_came_back() -> None:
    """No queue acknowledgement after the failure: no figure, not a made-up one."""
    window = FaultWindow("redis.peer-blackhole", "redis.peer", 0.0, 5.0, "blackhole")
    figure = queue_failover([_op(1.0, "file")], [window], _path)
    assert figure["first_failed_s"] == 1.0
    assert figure["failover_s"] is None
    assert queue_failover([_op(1.0, "file")], [], _path)["fault"] is None


def test_replicated_stack_faults_name_its_proxies_and_processes() -> None:
    """Peer and node proxies take network faults; nodes and Sentinels process faults;
    anything else is refused up front."""
    assert FaultSpec.parse("redis.peer-blackhole").target == "redis.peer"
    assert FaultSpec.parse("redis.n2.peer-down").target == "redis.n2.peer"
    assert FaultSpec.parse("redis.n1-down").kind == "down"
    assert FaultSpec.parse("redis.n1-sigkill").kind == "sigkill"
    assert FaultSpec.parse("sentinel.3-sigstop").target == "sentinel.3"
    for bad in ("redis.n1.peer-sigkill", "sentinel.1-down", "redis.peer-powercut"):
        with pytest.raises(FaultError):
            FaultSpec.parse(bad)


def test_the_redis_stack_option_is_checked() -> None:
    """`stack = { redis = ... }` takes single or replicated; the two new scenarios ask for
    the replicated stack and WAIT on both paths."""
    raw = {"name": "x", "duration_s": 5, "workload": {"rate_per_s": 10}, "faults": []}
    with pytest.raises(ScenarioError, match=r"stack\.redis"):
        parse_scenario({**raw, "stack": {"redis": "cluster"}})
    assert parse_scenario({**raw, "stack": {"redis": "replicated"}}).stack["redis"] == "replicated"
    catalogue = {s.name: s for s in load_catalogue()}
    for name in ("redis-failover", "redis-partition"):
        assert catalogue[name].stack["redis"] == "replicated"
        assert catalogue[name].target_env["AUDITORIA_QUEUE_MIN_REPLICAS"] == "1"
        assert catalogue[name].target_env["CACHE_MIN_REPLICAS"] == "1"
