"""Consumer names of the audit queue's workers, and taking over from dead predecessors.

Every process consumes under its own name, `<instance id>-<pid>-<8 hex>`: two processes
(two instances started with the same INSTANCE_ID, or a restart) never share one, so one's
history reads never count as the other's deliveries. A restarted instance's new process
adopts at once what its earlier processes left pending (they are dead: it replaced them),
instead of waiting for those entries to sit idle for `claim_idle_s`.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.typing import StreamIdT

__all__ = ["adopt_predecessors", "consumer_name", "is_predecessor"]

_log = logging.getLogger(__name__)
T = TypeVar("T")
Bounded = Callable[[Awaitable[Any]], Awaitable[Any]]


def consumer_name(instance_id: str) -> str:
    """A consumer name for this process: `<instance_id>-<pid>-<8 hex>` (never shared)."""
    return f"{instance_id}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def is_predecessor(name: str, instance_id: str, own: str) -> bool:
    """Was `name` the consumer of an earlier process of `instance_id` (and not `own`)?
    The bare instance id counts too (the names of releases before per-process names)."""
    if name == own:
        return False
    pattern = re.escape(instance_id) + r"-\d+-[0-9a-f]{8}"
    return name == instance_id or re.fullmatch(pattern, name) is not None


async def adopt_predecessors(
    redis: aioredis.Redis,
    stream: str,
    group: str,
    own: str,
    instance_id: str,
    batch: int,
    group_call: Bounded,
    bounded: Bounded,
) -> int:
    """XCLAIM (JUSTID: no delivery counted) every entry pending on a predecessor of `own`,
    then delete those consumers; returns how many entries were adopted."""
    adopted = 0
    for info in await group_call(redis.xinfo_consumers(stream, group)):
        raw = info["name"]
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        if not is_predecessor(name, instance_id, own):
            continue
        while True:
            pending = await bounded(
                redis.xpending_range(stream, group, "-", "+", batch, consumername=name)
            )
            ids: list[StreamIdT] = [p["message_id"] for p in pending]
            if ids:
                await bounded(redis.xclaim(stream, group, own, 0, ids, justid=True))
                adopted += len(ids)
            if len(ids) < batch:
                break
        await bounded(redis.xgroup_delconsumer(stream, group, name))
        _log.info("audit worker %s: adopted %d pending entries of %s", own, adopted, name)
    return adopted
