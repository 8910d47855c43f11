"""The audit stream's format and its producer, and how a worker sorts what it read.

Producer: `AuditQueue.publish` XADDs the event's canonical JSON (field `e`). The stream is
never trimmed: an entry leaves it only when a worker has committed it and acknowledged it.

`classify` splits what a read delivered into valid events, dead letters (entries that are
not events) and entries deleted meanwhile. How often an entry was delivered plays no part:
Redis counts a delivery on every history read and claim, even when the reply was lost, so
a count says nothing about the event. Only the database rejecting a row, row by row,
dead-letters a valid event (in the worker).

Dead-letter reasons are made storable: a foreign entry's text can hold anything (a NUL,
which PostgreSQL refuses in `text`), and a reason PostgreSQL refuses would fail every pass.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from reference.audit.event import AuditEvent, InvalidAuditEvent
from reference.audit.store import DeadLetter
from reference.sentinel import recheck_primary

__all__ = [
    "EVENT_FIELD",
    "AuditQueue",
    "Batch",
    "NotReplicated",
    "StreamEntry",
    "as_text",
    "classify",
    "clean_reason",
    "entries_from_reply",
]

EVENT_FIELD = b"e"
"""The stream entry field holding the event's canonical JSON."""
MAX_REASON_CHARS = 500
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")


class NotReplicated(Exception):
    """WAIT saw fewer replicas than required take the entry in time: not acknowledged
    (a failover may lose it; the event goes to the next path, `event_id` absorbs the
    duplicate if the entry survives after all)."""

    def __init__(self, entry_id: str, replicas: int, required: int) -> None:
        super().__init__(f"entry {entry_id} on {replicas} of {required} replica(s) in time")
        self.entry_id = entry_id
        self.replicas = replicas


class AuditQueue:
    """The producer: one XADD per event, no trimming. With `min_replicas` > 0 the XADD is
    followed, on the same connection, by `WAIT min_replicas wait_timeout`: the event is
    acknowledged only when that many replicas have it (asynchronous replication would
    otherwise lose it in a failover). Not a consensus write: see docs/redis-replication.md."""

    def __init__(
        self,
        redis: aioredis.Redis,
        stream: str,
        *,
        min_replicas: int = 0,
        wait_timeout_s: float = 0.25,
    ) -> None:
        if min_replicas < 0 or wait_timeout_s <= 0:
            raise ValueError("min_replicas must be >= 0 and wait_timeout_s > 0")
        self.redis = redis
        self.stream = stream
        self.min_replicas = min_replicas
        self.wait_timeout_ms = max(1, round(wait_timeout_s * 1000))

    async def publish(self, event: AuditEvent) -> str:
        """XADD the event (then WAIT, see the class); returns the entry id, or raises
        NotReplicated. Bound it from outside (it may hang)."""
        fields: dict[Any, Any] = {EVENT_FIELD: event.to_json_bytes()}
        if self.min_replicas == 0:
            return as_text(await self.redis.xadd(self.stream, fields))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(self.stream, fields)
            pipe.execute_command("WAIT", self.min_replicas, self.wait_timeout_ms)
            entry_id, replicas = await pipe.execute()
        if int(replicas) < self.min_replicas:
            await recheck_primary(self.redis)  # cut off from its replicas: replaced?
            raise NotReplicated(as_text(entry_id), int(replicas), self.min_replicas)
        return as_text(entry_id)


@dataclass(frozen=True)
class StreamEntry:
    """One stream entry as delivered to this consumer (`fields` None: deleted meanwhile)."""

    entry_id: str
    fields: dict[bytes, bytes] | None
    deliveries: int = 1


@dataclass(frozen=True)
class Batch:
    """What one read produced: events to store, dead letters, and entries to just ack."""

    events: tuple[tuple[str, AuditEvent], ...] = ()
    dead: tuple[DeadLetter, ...] = ()
    gone: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.events) + len(self.dead) + len(self.gone)

    @property
    def ids(self) -> list[str]:
        """Every entry id in the batch."""
        return [i for i, _ in self.events] + [d.entry_id for d in self.dead] + list(self.gone)


def clean_reason(reason: str) -> str:
    """`reason` with control characters (NUL first of all) escaped, at most 500 chars."""
    cleaned = _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", reason)
    if len(cleaned) > MAX_REASON_CHARS:
        cleaned = cleaned[: MAX_REASON_CHARS - 3] + "..."
    return cleaned or "unknown"


def classify(entries: Sequence[StreamEntry], stream: str) -> Batch:
    """Sort delivered entries: valid events; dead letters (not events); entries deleted
    meanwhile (only to be acked). Duplicates are dropped; delivery counts are ignored."""
    events: list[tuple[str, AuditEvent]] = []
    dead: list[DeadLetter] = []
    gone: list[str] = []
    seen: set[str] = set()
    for entry in entries:
        if entry.entry_id in seen:
            continue
        seen.add(entry.entry_id)
        if entry.fields is None:
            gone.append(entry.entry_id)
            continue
        raw = _field(entry.fields)
        if raw is None:
            reason = "malformed: no event field"
        else:
            try:
                events.append((entry.entry_id, AuditEvent.from_json_bytes(raw)))
                continue
            except InvalidAuditEvent as exc:
                reason = f"malformed: {exc}"
        dead.append(
            DeadLetter(
                stream=stream,
                entry_id=entry.entry_id,
                raw=raw if raw is not None else repr(entry.fields).encode(),
                reason=clean_reason(reason),
                deliveries=entry.deliveries,
            )
        )
    return Batch(tuple(events), tuple(dead), tuple(gone))


def entries_from_reply(reply: Any) -> list[StreamEntry]:
    """XREADGROUP's reply (RESP2 list or RESP3 dict) as entries (delivered once)."""
    if not reply:
        return []
    streams = reply.items() if isinstance(reply, dict) else reply
    out: list[StreamEntry] = []
    for _, messages in streams:
        for entry_id, fields in messages:
            out.append(StreamEntry(as_text(entry_id), dict(fields) if fields else None))
    return out


def as_text(value: bytes | str) -> str:
    """A Redis reply item as str."""
    return value.decode() if isinstance(value, bytes) else value


def _field(fields: dict[Any, Any]) -> bytes | None:
    value = fields.get(EVENT_FIELD, fields.get(EVENT_FIELD.decode()))
    if value is None:
        return None
    return value.encode() if isinstance(value, str) else bytes(value)
