"""`queue_wait_vs_xadd` of `stormproof bench audit`: the cost of WAIT on the queue path.

The audit bench's own stack has one Redis; this figure needs a replica, so it brings up a
replicated local stack of its own (scenarios/stack/replicated.py) and compares, on its
primary (direct URL, no proxy), the queue path acknowledging after `WAIT 1` (as with
AUDITORIA_QUEUE_MIN_REPLICAS=1) with a bare XADD, the same way `queue_vs_xadd` does.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence

import redis.asyncio as aioredis

from reference.audit.event import AuditEvent
from reference.audit.queue import AuditQueue
from reference.audit.resilient import ResilientAudit
from reference.config import Settings
from reference.redis_client import make_redis
from scenarios.stack import open_stack

__all__ = ["compare_queue_with_xadd", "measure_queue_wait"]

Compare = Callable[
    [int, Callable[[int], Awaitable[object]], Callable[[int], Awaitable[object]]],
    Awaitable[tuple[float, float]],
]


async def measure_queue_wait(
    events: Sequence[AuditEvent],
    writers: int,
    make_audit: Callable[[Settings, AuditQueue], ResilientAudit],
    compare: Compare,
) -> tuple[float, float]:
    """(queue path with WAIT 1 events/s, bare XADD/s) on a fresh replicated stack."""
    with open_stack("local", redis_mode="replicated") as stack:
        url = stack.urls.redis_direct_url  # node 0: the primary after start-up
        settings = Settings(redis_url=url, audit_timeout_s=5.0, breaker_failure_threshold=1000)
        return await compare_queue_with_xadd(
            url,
            5.0,
            events,
            writers,
            lambda client, stream: make_audit(
                settings, AuditQueue(client, stream, min_replicas=1, wait_timeout_s=2.5)
            ),
            compare,
            stream=f"bench:audit:wait:{uuid.uuid4().hex[:8]}",
        )


async def compare_queue_with_xadd(
    url: str,
    op_timeout_s: float,
    events: Sequence[AuditEvent],
    writers: int,
    make_audit: Callable[[aioredis.Redis, str], ResilientAudit],
    compare: Compare,
    *,
    stream: str,
) -> tuple[float, float]:
    """(queue path events/s, bare XADD/s of the same payloads), on Redis at `url`; the
    audit is built on the client and stream given, and both streams are deleted after."""
    client = make_redis(url, op_timeout_s, max_connections=writers)
    bare = aioredis.Redis.from_url(url, max_connections=writers)
    audit = make_audit(client, stream)
    payloads = [e.to_json_bytes() for e in events]
    try:
        return await compare(
            len(events),
            lambda i: audit.record(events[i]),
            lambda i: bare.xadd(stream + ":raw", {b"e": payloads[i]}),
        )
    finally:
        await bare.delete(stream, stream + ":raw")
        await client.aclose()
        await bare.aclose()
