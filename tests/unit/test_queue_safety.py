"""The queue durability verdict (issue 12, item 2): which Redis settings can keep a stream.

Pure logic: `assess` over the values `CONFIG GET` and `INFO replication` return, and the
guard's usable / reported state. The real Redis side is in
tests/integration/test_audit_queue_safety.py.
"""

from __future__ import annotations

import pytest

from reference.audit.queue_safety import QueueGuard, QueueSafety, assess

SAFE = {"appendonly": "yes", "appendfsync": "always", "maxmemory-policy": "noeviction"}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"appendonly": "no"}, "appendonly"),
        ({"appendfsync": "everysec"}, "appendfsync"),
        ({"maxmemory-policy": "allkeys-lru"}, "maxmemory-policy"),
        ({"maxmemory-policy": "allkeys-random"}, "maxmemory-policy"),
    ],
)
def test_each_unsafe_setting_is_named(change: dict[str, str], problem: str) -> None:
    """AOF off, a lazy fsync, or eviction of any key: unsafe, and the reason names it."""
    verdict = assess({**SAFE, **change}, "master")
    assert not verdict.safe
    assert any(problem in p for p in verdict.problems), verdict.problems


def test_a_safe_primary_and_volatile_eviction_are_accepted() -> None:
    """noeviction and volatile-* (the stream has no TTL, it is never evicted) are safe."""
    assert assess(SAFE, "master").safe
    assert assess({**SAFE, "maxmemory-policy": "volatile-lru"}, "master").safe


def test_a_replica_is_unsafe() -> None:
    """A replica does not take writes: the queue cannot live there."""
    verdict = assess(SAFE, "slave")
    assert not verdict.safe and any("replica" in p for p in verdict.problems)


def test_the_guard_uses_the_queue_only_when_checked_and_safe_or_accepted() -> None:
    """Unchecked: not used, not reported unsafe. Unsafe: not used unless accepted, and
    reported either way. Changes are notified once."""
    seen: list[QueueSafety] = []
    guard = QueueGuard(on_change=seen.append)
    assert not guard.usable and not guard.known_unsafe
    guard.update(assess({**SAFE, "appendfsync": "everysec"}, "master"))
    assert not guard.usable and guard.known_unsafe
    guard.update(assess({**SAFE, "appendfsync": "everysec"}, "master"))
    assert len(seen) == 1
    guard.update(assess(SAFE, "master"))
    assert guard.usable and not guard.known_unsafe and len(seen) == 2
    accepting = QueueGuard(accept_unsafe=True)
    accepting.update(assess({**SAFE, "appendonly": "no"}, "master"))
    assert accepting.usable and accepting.known_unsafe
    assert accepting.to_dict()["used"] is True and accepting.to_dict()["safe"] is False
