"""The audit queue: a Redis Stream producer and the consumer-group worker that drains it.

The producer and the entry format live in `reference/audit/stream.py` (re-exported here).

Worker (`QueueWorker`), one pass (`drain_once`) = `read_batch` -> `store_batch` ->
`ack_batch`:

- `read_batch`: on its first read, the entries its instance's earlier processes left
  pending (consumers named after the same instance id: they are dead, this process took
  their place) are claimed for this one; then its own pending entries (after a restart, a
  lost reply or a rejected row: a history read), then entries idle longer than
  `claim_idle_s` on any consumer (XAUTOCLAIM: another instance's dead consumer), then new
  ones (XREADGROUP >, blocking at most `block_s`). Entries that are not events become dead
  letters; how often an entry was delivered never matters (Redis counts a delivery on
  every history read and claim, even when the reply is lost).
- `store_batch`: events into `audit_log` in one statement (always attempted, idempotent);
  a data error falls back to row by row, and a row the database rejects
  `max_deliveries` times is dead-lettered with the database's reason. Dead letters are
  stored after the events, row by row if one of them is refused (its reason is cleaned
  of what PostgreSQL cannot store; one that still fails is stored without its raw bytes).
  Anything else (Redis, the network, a timeout) fails the pass.
- `ack_batch`: XACK then XDEL, in one MULTI, of exactly the committed entries.

A failed pass keeps its batch in memory and retries it on the next pass (after a backoff
in `run`), refreshing the claim on its entries (XCLAIM JUSTID). Consumer names are per
process (`consumer_name`): two processes never share one, and a restarted instance
adopts what its predecessor held at once instead of waiting `claim_idle_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from redis.typing import StreamIdT

from reference.audit.consumers import adopt_predecessors, consumer_name
from reference.audit.dead_letters import rejected_letter, store_dead_letters
from reference.audit.event import AuditEvent
from reference.audit.store import POISON_ERRORS, AuditStore, DeadLetter
from reference.audit.stream import (
    EVENT_FIELD,
    AuditQueue,
    Batch,
    StreamEntry,
    as_text,
    classify,
    entries_from_reply,
)
from reference.clock import SYSTEM_CLOCK, Clock
from reference.errors import describe

__all__ = [
    "EVENT_FIELD",
    "AuditQueue",
    "Batch",
    "QueueWorker",
    "StreamEntry",
    "WorkerConfig",
    "classify",
    "consumer_name",
    "entries_from_reply",
]

T = TypeVar("T")

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerConfig:
    """How a worker reads, retries and gives up. `block_s` must be below the client's
    socket timeout (a blocked XREADGROUP would otherwise time out). `max_deliveries`: how
    many times the database may reject one entry's row before it is dead-lettered.
    `predecessors`: the instance id whose earlier processes' pending entries this worker
    adopts on its first read (None: none)."""

    stream: str
    group: str = "audit-workers"
    consumer: str = field(default_factory=lambda: _default_consumer())
    batch_size: int = 500
    block_s: float = 1.0
    claim_idle_s: float = 30.0
    max_deliveries: int = 5
    redis_timeout_s: float = 2.0
    db_timeout_s: float = 5.0
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 2.0
    predecessors: str | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_deliveries < 1:
            raise ValueError("batch_size and max_deliveries must be >= 1")
        if self.block_s < 0 or self.claim_idle_s <= 0 or self.redis_timeout_s <= 0:
            raise ValueError("block_s must be >= 0; claim_idle_s, redis_timeout_s > 0")
        if not 0 < self.backoff_initial_s <= self.backoff_max_s:
            raise ValueError("need 0 < backoff_initial_s <= backoff_max_s")


class QueueWorker:
    """Drains the audit stream into the store; see the module docstring."""

    def __init__(
        self,
        redis: aioredis.Redis,
        store: AuditStore,
        config: WorkerConfig,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        socket_timeout = redis.connection_pool.connection_kwargs.get("socket_timeout")
        if socket_timeout is not None and config.block_s >= float(socket_timeout):
            raise ValueError(
                f"block_s ({config.block_s}) must be below the Redis client's socket "
                f"timeout ({socket_timeout}): use a client made for the worker"
            )
        self.redis = redis
        self.store = store
        self.config = config
        self._clock = clock
        self._group_ready = False
        self._check_own = True  # a restarted consumer may have pending entries
        self._rejected = False
        self._rejections: dict[str, int] = {}
        self._adopt = config.predecessors is not None
        self._claim_cursor = "0-0"
        self._next_claim_at = clock.monotonic()
        self._held: Batch | None = None
        self._pass_lock = asyncio.Lock()
        self._stopping = asyncio.Event()

    # -- one pass -------------------------------------------------------------------------

    async def drain_once(self) -> int:
        """One read -> store -> ack pass; returns how many entries it settled.

        Raises on a Redis or database failure; the batch is kept and retried next time.
        """
        async with self._pass_lock:
            batch = self._held
            if batch is not None:
                await self._refresh_claim(batch)
            else:
                batch = await self.read_batch()
            if not batch:
                return 0
            self._held = batch
            done = await self.store_batch(batch)
            await self.ack_batch(done)
            self._held = None
            return len(done)

    async def read_batch(self) -> Batch:
        """Own pending entries, then stuck ones (XAUTOCLAIM), then new ones.

        A read that fails may still have delivered entries to this consumer (a lost
        reply): the next read starts with this consumer's pending entries.
        """
        await self._ensure_group()
        room = self.config.batch_size
        entries: list[StreamEntry] = []
        try:
            if self._adopt:
                await self._adopt_predecessors()
            if self._check_own:
                own = await self._read_own_pending(room)
                self._check_own = len(own) >= room
                entries += own
                room -= len(own)
            if room and self._clock.monotonic() >= self._next_claim_at:
                entries += await self._autoclaim(room)
                room = self.config.batch_size - len(entries)
            if room:
                block_ms = round(self.config.block_s * 1000)
                block = None if entries or block_ms <= 0 else block_ms  # BLOCK 0 = forever
                entries += await self._read_new(room, block)
        except BaseException:
            self._check_own = True
            raise
        return classify(entries, self.config.stream)

    async def store_batch(self, batch: Batch) -> list[str]:
        """Commit the batch (events first, then dead letters); returns the entry ids now
        safe to acknowledge."""
        timeout = self.config.db_timeout_s
        done = list(batch.gone)
        dead = list(batch.dead)
        if batch.events:
            try:
                await self.store.insert_many(
                    [e for _, e in batch.events], "queue", timeout_s=timeout
                )
                done += [entry_id for entry_id, _ in batch.events]
            except POISON_ERRORS as exc:
                if _connection_lost(exc):
                    raise
                _log.warning("audit worker: batch rejected (%s); retrying row by row", _brief(exc))
                stored, rejected = await self._store_row_by_row(batch.events)
                done += stored
                dead += rejected
        if dead:
            await self._store_dead_letters(dead)
            done += [letter.entry_id for letter in dead]
        return done

    async def ack_batch(self, entry_ids: Sequence[str]) -> None:
        """XACK then XDEL exactly `entry_ids` (committed), atomically."""
        if not entry_ids:
            return
        pipe = self.redis.pipeline(transaction=True)
        pipe.xack(self.config.stream, self.config.group, *entry_ids)
        pipe.xdel(self.config.stream, *entry_ids)
        await self._bounded(pipe.execute())

    # -- loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Drain until `stop()` or cancellation; failures back off (bounded), never exit."""
        self._stopping.clear()
        delay = self.config.backoff_initial_s
        while not self._stopping.is_set():
            try:
                settled = await self.drain_once()
                if settled == 0 and self._check_own and self._rejected:
                    # rows the database rejected stay pending: pace their redelivery
                    # (each one counts towards the dead letter) instead of spinning
                    self._rejected = False
                    await self._pause(self.config.backoff_max_s)
            except Exception as exc:
                _log.warning(
                    "audit worker: pass failed (%s); retrying in %.2fs",
                    _brief(exc),
                    delay,
                )
                await self._pause(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self.config.backoff_max_s)
            else:
                delay = self.config.backoff_initial_s

    def stop(self) -> None:
        """Ask `run` to return after the current pass."""
        self._stopping.set()

    async def drain(self, timeout_s: float) -> int:
        """Passes until the stream has nothing left for this group, or `timeout_s` passed.

        Claims idle entries of any consumer at once. Failures back off and retry within
        the deadline; returns how many entries were settled. Raises TimeoutError only if
        the deadline passes with a backlog still there.
        """
        settled = 0
        delay = self.config.backoff_initial_s
        self._next_claim_at = self._clock.monotonic()
        self._check_own = True
        async with asyncio.timeout(timeout_s):
            while True:
                try:
                    settled += await self.drain_once()
                    if self._held is None and await self.backlog() == 0:
                        return settled
                    delay = self.config.backoff_initial_s
                except Exception as exc:
                    _log.info("audit worker drain: %s; retrying in %.2fs", _brief(exc), delay)
                    await self._clock.sleep(delay)
                    delay = min(delay * 2, self.config.backoff_max_s)

    async def backlog(self) -> int:
        """Entries not yet committed: delivered but unacknowledged, plus never delivered."""
        stream, group = self.config.stream, self.config.group
        if not await self._bounded(self.redis.exists(stream)):
            return 0
        groups = await self._bounded(self.redis.xinfo_groups(stream))
        for info in groups:
            if as_text(info.get("name", b"")) == group:
                lag = info.get("lag")
                if lag is None:  # unknown (tombstones after the group's position)
                    return int(await self._bounded(self.redis.xlen(stream)))
                return int(info.get("pending", 0)) + int(lag)
        return int(await self._bounded(self.redis.xlen(stream)))

    # -- reading --------------------------------------------------------------------------

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self._bounded(
                self.redis.xgroup_create(
                    self.config.stream, self.config.group, id="0", mkstream=True
                )
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def _read_own_pending(self, count: int) -> list[StreamEntry]:
        """This consumer's pending entries (a history read: each counts as a delivery)."""
        reply = await self._group_call(
            self.redis.xreadgroup(
                self.config.group, self.config.consumer, {self.config.stream: "0"}, count=count
            )
        )
        return await self._with_deliveries(entries_from_reply(reply))

    async def _autoclaim(self, count: int) -> list[StreamEntry]:
        """Entries idle past `claim_idle_s` on any consumer, claimed for this one."""
        reply = await self._group_call(
            self.redis.xautoclaim(
                self.config.stream,
                self.config.group,
                self.config.consumer,
                min_idle_time=max(1, round(self.config.claim_idle_s * 1000)),
                start_id=self._claim_cursor,
                count=count,
            )
        )
        cursor, claimed = as_text(reply[0]), reply[1]
        self._claim_cursor = cursor
        if cursor == "0-0":  # a full scan done: the next one after half the idle time
            self._next_claim_at = self._clock.monotonic() + self.config.claim_idle_s / 2
        entries = [StreamEntry(as_text(i), f) for i, f in claimed if f is not None]
        return await self._with_deliveries(entries)

    async def _read_new(self, count: int, block_ms: int | None) -> list[StreamEntry]:
        reply = await self._group_call(
            self.redis.xreadgroup(
                self.config.group,
                self.config.consumer,
                {self.config.stream: ">"},
                count=count,
                block=block_ms,
            ),
            extra_s=(block_ms or 0) / 1000,
        )
        return entries_from_reply(reply)

    async def _with_deliveries(self, entries: list[StreamEntry]) -> list[StreamEntry]:
        """`entries` with their delivery counts from XPENDING (one round trip)."""
        if not entries:
            return entries
        pipe = self.redis.pipeline(transaction=False)
        for entry in entries:
            pipe.xpending_range(
                self.config.stream, self.config.group, entry.entry_id, entry.entry_id, 1
            )
        replies = await self._bounded(pipe.execute())
        out = []
        for entry, reply in zip(entries, replies, strict=True):
            count = int(reply[0]["times_delivered"]) if reply else 1
            out.append(StreamEntry(entry.entry_id, entry.fields, count))
        return out

    async def _refresh_claim(self, batch: Batch) -> None:
        """Reset the idle time of a held batch so live workers do not steal it (best effort).

        JUSTID claims do not increment the delivery count."""
        ids: list[StreamIdT] = list(batch.ids)
        if not ids:
            return
        with contextlib.suppress(Exception):
            await self._bounded(
                self.redis.xclaim(
                    self.config.stream,
                    self.config.group,
                    self.config.consumer,
                    0,
                    ids,
                    justid=True,
                )
            )

    # -- storing --------------------------------------------------------------------------

    async def _store_row_by_row(
        self, events: Sequence[tuple[str, AuditEvent]]
    ) -> tuple[list[str], list[DeadLetter]]:
        """Each event alone: the ids stored, and dead letters for rows the database has
        now rejected `max_deliveries` times (the others stay pending, retried later)."""
        done: list[str] = []
        dead: list[DeadLetter] = []
        for entry_id, event in events:
            try:
                await self.store.insert_one(event, "queue", timeout_s=self.config.db_timeout_s)
            except POISON_ERRORS as exc:
                if _connection_lost(exc):
                    raise
                rejections = self._rejections.get(entry_id, 0) + 1
                if rejections >= self.config.max_deliveries:
                    self._rejections.pop(entry_id, None)
                    _log.warning(
                        "audit worker: entry %s rejected %d times (%s); dead-lettered",
                        entry_id,
                        rejections,
                        _brief(exc),
                    )
                    dead.append(
                        rejected_letter(self.config.stream, entry_id, event, rejections, exc)
                    )
                    continue
                self._rejections[entry_id] = rejections
                _log.warning(
                    "audit worker: entry %s rejected (%s); left pending", entry_id, _brief(exc)
                )
                self._check_own = True
                self._rejected = True
                continue
            self._rejections.pop(entry_id, None)
            done.append(entry_id)
        return done, dead

    async def _store_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        await store_dead_letters(self.store, letters, self.config.db_timeout_s)

    async def _adopt_predecessors(self) -> None:
        """Claim what earlier processes of this instance left pending (see consumers)."""
        instance = self.config.predecessors
        if instance is not None:
            await adopt_predecessors(
                self.redis,
                self.config.stream,
                self.config.group,
                self.config.consumer,
                instance,
                self.config.batch_size,
                self._group_call,
                self._bounded,
            )
        self._adopt = False
        self._check_own = True

    # -- plumbing -------------------------------------------------------------------------

    async def _group_call(self, call: Awaitable[T], extra_s: float = 0.0) -> T:
        """A group command; a missing group (Redis lost its data) is re-created next time."""
        try:
            return await self._bounded(call, extra_s)
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                self._group_ready = False
            raise

    async def _bounded(self, call: Awaitable[T], extra_s: float = 0.0) -> T:
        async with asyncio.timeout(self.config.redis_timeout_s + extra_s):
            return await call

    async def _pause(self, seconds: float) -> None:
        """Sleep `seconds` on the clock, or less if `stop()` is called meanwhile."""
        if self._stopping.is_set():
            return
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        stopper = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopper.cancel()


def _default_consumer() -> str:
    return consumer_name(socket.gethostname())


def _connection_lost(exc: BaseException) -> bool:
    return bool(getattr(exc, "connection_invalidated", False))


def _brief(exc: BaseException) -> str:
    return describe(exc, limit=160)
