"""Operators' readings: bounded reads of the audit backlog and dead letters, and the
gauges `/metrics` publishes for the Prometheus rules (deploy/prometheus/rules.yml).

Each read is bounded by `bound_s` and made only while the dependency's breaker is CLOSED
(None otherwise): a scrape or a dashboard refresh during an outage answers at once
instead of waiting on a dead dependency. A gauge whose reading is unknown keeps its last
value.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from reference.breaker import CircuitState

if TYPE_CHECKING:
    from reference.service.components import Components

__all__ = ["READ_BOUND_S", "dead_letters", "publish_gauges", "queue_backlog"]

READ_BOUND_S = 0.5
"""Longest wait for one reading."""


async def queue_backlog(c: Components, bound_s: float = READ_BOUND_S) -> int | None:
    """Stream entries not yet committed; None without a queue, with the Redis breaker not
    CLOSED, or when Redis does not answer within `bound_s`."""
    if c.worker is None or c.redis_breaker.state is not CircuitState.CLOSED:
        return None
    try:
        async with asyncio.timeout(bound_s):
            return await c.worker.backlog()
    except Exception:  # unknown now
        return None


async def dead_letters(c: Components, bound_s: float = READ_BOUND_S) -> int | None:
    """Rows in the dead-letter table; None before the schema exists, with the database
    breaker not CLOSED, or when PostgreSQL does not answer within `bound_s`."""
    if not c.schema_ready.is_set() or c.db_breaker.state is not CircuitState.CLOSED:
        return None
    try:
        async with asyncio.timeout(bound_s):
            return await c.store.dead_letter_count(timeout_s=bound_s)
    except Exception:  # unknown now
        return None


async def publish_gauges(c: Components, bound_s: float = READ_BOUND_S) -> None:
    """Set the health, dead-letter and queue-backlog gauges (call before rendering)."""
    report = await c.health_report()
    c.metrics.set_health(
        str(report["status"]),
        redis_ok=bool(report["redis"]["ok"]),
        database_ok=bool(report["database"]["ok"]),
    )
    queue, dead = await asyncio.gather(queue_backlog(c, bound_s), dead_letters(c, bound_s))
    if queue is not None:
        c.metrics.set_queue_backlog(queue)
    if dead is not None:
        c.metrics.set_dead_letters(dead)
