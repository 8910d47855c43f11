"""Failover time as the service saw it: from the first audit write the queue did not take
to the next one it took again, after the first Redis fault (a figure, not a verdict).

A write the queue did not take is one acknowledged through another path (`db`, `file`)
or not acknowledged at all; the queue is the first path tried, so either means the
queue's attempt failed (no primary, a refused write, WAIT short of replicas).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from scenarios.history import JSON, FaultWindow, Op

__all__ = ["queue_failover"]


def queue_failover(
    ops: Sequence[Op], windows: Sequence[FaultWindow], path_of: Callable[[JSON], str]
) -> dict[str, JSON]:
    """{fault, first_failed_s, queue_back_s, failover_s} for the first Redis fault window
    (times from the run's start; None where it did not happen)."""
    redis = [w for w in windows if w.target == "redis" or w.target.startswith("redis.")]
    if not redis:
        return {"fault": None, "first_failed_s": None, "queue_back_s": None, "failover_s": None}
    window = redis[0]
    ordered = sorted((op for op in ops if op.start >= window.start), key=lambda op: op.start)

    def on_queue(op: Op) -> bool:
        return op.outcome == "ok" and path_of(op.response) == "queue"

    failed = next((op for op in ordered if not on_queue(op)), None)
    back = None
    if failed is not None:
        back = next((op for op in ordered if op.start > failed.start and on_queue(op)), None)
    first_failed = failed.start if failed is not None else None
    queue_back = back.end if back is not None else None
    return {
        "fault": window.name,
        "first_failed_s": _round(first_failed),
        "queue_back_s": _round(queue_back),
        "failover_s": _round(
            queue_back - first_failed
            if queue_back is not None and first_failed is not None
            else None
        ),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
