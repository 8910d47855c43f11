"""Power-cut and disk faults through the FaultInjector on the local stack's forgetful disks."""

from __future__ import annotations

import pytest
import redis

from scenarios.faults import FaultError, FaultInjector, FaultSpec
from scenarios.pytest_plugin import unavailable
from scenarios.stack import Stack

pytestmark = pytest.mark.integration


def _disks(stack: Stack) -> None:
    if stack.disks is None or set(stack.disks.mounts) != {"redis", "journal"}:
        why = stack.disks.unavailable if stack.disks else f"the {stack.provider} stack"
        unavailable(f"no forgetful disks: {why}")


def test_redis_powercut_keeps_what_appendfsync_always_acknowledged(
    stormproof_stack: Stack,
) -> None:
    """SIGKILL + cut + restart: every XADD Redis answered is still there (AOF always)."""
    _disks(stormproof_stack)
    assert stormproof_stack.disks is not None
    client = redis.Redis.from_url(stormproof_stack.urls.redis_direct_url, socket_timeout=5)
    try:
        client.delete("powercut-test")
        for index in range(300):
            client.xadd("powercut-test", {"i": index})
        injector = FaultInjector.on_stack(stormproof_stack)
        spec = injector.apply(FaultSpec.parse("redis-powercut"))
        counters = stormproof_stack.disks.mount("redis").counters()
        assert counters["cuts"] >= 1
        injector.revert(spec)  # restarts redis-server on what the disk kept
        assert client.xlen("powercut-test") == 300
        assert injector.revert_all() == []
    finally:
        client.close()


def test_journal_disk_faults_switch_on_and_off_and_heal_clears_them(
    stormproof_stack: Stack,
) -> None:
    """Each journal disk fault is visible on the mount while applied; revert and heal clear it."""
    _disks(stormproof_stack)
    assert stormproof_stack.disks is not None
    mount = stormproof_stack.disks.mount("journal")
    injector = FaultInjector.on_stack(stormproof_stack)
    for name, fs_name in (
        ("journal-disk-full", "disk-full"),
        ("journal-disk-eio", "eio"),
        ("journal-disk-readonly", "read-only"),
    ):
        spec = injector.apply(FaultSpec.parse(name))
        assert [f["name"] for f in mount.counters()["faults"]] == [fs_name]
        injector.revert(spec)
        assert mount.counters()["faults"] == []
    injector.apply(FaultSpec.parse("journal-disk-full"))
    stormproof_stack.heal()  # a fault left behind is cleared by the heal between tests
    assert mount.counters()["faults"] == []
    injector.revert_all()


def test_disk_faults_refuse_other_targets_and_stacks_without_disks() -> None:
    """journal-only kinds and redis/target-only power cuts; one line on a stack without disks."""
    with pytest.raises(FaultError, match="cannot target"):
        FaultSpec.parse("redis-disk-full")
    with pytest.raises(FaultError, match="cannot target"):
        FaultSpec.parse("postgres-powercut")

    class NoToxiproxy:
        pass

    injector = FaultInjector(NoToxiproxy())  # type: ignore[arg-type]
    with pytest.raises(FaultError, match="no forgetful disks"):
        injector.apply(FaultSpec.parse("journal-disk-eio"))
