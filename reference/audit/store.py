"""The audit sink: table `audit_log` keyed by `event_id`, written idempotently.

Every write is `INSERT ... ON CONFLICT (event_id) DO NOTHING`, so delivering an event
more than once (at-least-once on every path) still leaves exactly one row. Events are
passed to PostgreSQL as their canonical JSON and taken apart there, so a batch is one
statement (`unnest` of a jsonb array); a replay is a typed COPY (`reference.audit.drain`).

The idempotency key lives in two overridable class attributes, `EVENT_ID_COLUMN` and
`ON_CONFLICT`, so a deliberately broken variant (no idempotency key) is a two-line subclass.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import psycopg
from sqlalchemy import text
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reference.audit.db import run_bounded
from reference.audit.drain import copy_into
from reference.audit.event import AuditEvent, canonical_json

__all__ = ["POISON_ERRORS", "AuditStore", "DeadLetter"]

POISON_ERRORS = (DataError, IntegrityError, psycopg.DataError, psycopg.IntegrityError)
"""A row the database rejects for its data. Not ProgrammingError: a missing table or a
permission problem is the database's state, not the event's, and must fail the pass
(back off, retry) rather than push valid events towards the dead letter."""

_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_SCHEMA_LOCK_KEY = 0x5707_A0D1
_CREATE_RACE = (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable)


@dataclass(frozen=True)
class DeadLetter:
    """A stream entry given up on, with why (stored in `audit_dead_letter`)."""

    stream: str
    entry_id: str
    raw: bytes
    reason: str
    deliveries: int
    event_id: uuid.UUID | None = None


class AuditStore:
    """Idempotent writes to the audit tables over `engine` (every call bounded)."""

    EVENT_ID_COLUMN = "event_id uuid PRIMARY KEY"
    ON_CONFLICT = "ON CONFLICT (event_id) DO NOTHING"

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        table: str = "audit_log",
        dead_letter_table: str = "audit_dead_letter",
        op_timeout_s: float = 5.0,
    ) -> None:
        for name in (table, dead_letter_table):
            if not _IDENT.fullmatch(name):
                raise ValueError(f"not a plain SQL identifier: {name!r}")
        self.engine = engine
        self.table = table
        self.dead_letter_table = dead_letter_table
        self.op_timeout_s = op_timeout_s
        columns = "event_id, occurred_at, actor, action, entity, entity_id, payload, path"
        from_doc = (
            "(d->>'event_id')::uuid, (d->>'occurred_at')::timestamptz, d->>'actor', "
            "d->>'action', d->>'entity', d->>'entity_id', d->'payload'"
        )
        self._insert_one_sql = text(
            f"INSERT INTO {table} ({columns}) VALUES (:event_id, :occurred_at, :actor, "
            f":action, :entity, :entity_id, CAST(:payload AS jsonb), :path) {self.ON_CONFLICT}"
        )
        self._insert_many_sql = text(
            f"INSERT INTO {table} ({columns}) SELECT {from_doc}, :path "
            f"FROM unnest(CAST(:docs AS jsonb[])) AS d {self.ON_CONFLICT}"
        )

    # -- schema ---------------------------------------------------------------------------

    def schema_sql(self) -> list[str]:
        """The statements that create both tables when absent."""
        return [
            f"CREATE TABLE IF NOT EXISTS {self.table} ("
            f"{self.EVENT_ID_COLUMN}, occurred_at timestamptz NOT NULL, actor text NOT NULL, "
            "action text NOT NULL, entity text NOT NULL, entity_id text NOT NULL, "
            "payload jsonb NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now(), "
            "path text NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self.dead_letter_table} ("
            "stream text NOT NULL, entry_id text NOT NULL, event_id uuid, raw bytea NOT NULL, "
            "reason text NOT NULL, deliveries integer NOT NULL, "
            "dead_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (stream, entry_id))",
        ]

    async def ensure_schema(self, timeout_s: float | None = None) -> None:
        """Create the tables if absent; idempotent and safe for concurrent instances.

        Creators serialize on a transaction-scoped advisory lock; a creator that does not
        take it (another tool) can still race `IF NOT EXISTS` into a unique violation on
        the catalog, which is retried once (the table then exists).
        """

        async def create(conn: AsyncConnection) -> None:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK_KEY})
            for statement in self.schema_sql():
                await conn.execute(text(statement))

        for attempt in (1, 2):
            try:
                await run_bounded(self.engine, create, timeout_s or self.op_timeout_s)
                return
            except DBAPIError as exc:
                racing = isinstance(exc.orig, _CREATE_RACE)
                if attempt == 2 or not racing:
                    raise

    # -- writes ---------------------------------------------------------------------------

    async def insert_one(
        self, event: AuditEvent, path: str, *, timeout_s: float | None = None
    ) -> int:
        """Insert one event; returns 1 if a row was added, 0 if it was already there."""
        params = {
            "event_id": event.event_id,
            "occurred_at": event.occurred_at,
            "actor": event.actor,
            "action": event.action,
            "entity": event.entity,
            "entity_id": event.entity_id,
            "payload": _payload_json(event),
            "path": path,
        }

        async def op(conn: AsyncConnection) -> int:
            result = await conn.execute(self._insert_one_sql, params)
            return max(0, result.rowcount)

        return await run_bounded(self.engine, op, timeout_s or self.op_timeout_s)

    async def insert_many(
        self, events: Sequence[AuditEvent], path: str, *, timeout_s: float | None = None
    ) -> int:
        """Insert a batch in one statement; returns how many rows were new."""
        if not events:
            return 0
        docs = [event.to_json_bytes().decode("utf-8") for event in events]

        async def op(conn: AsyncConnection) -> int:
            result = await conn.execute(self._insert_many_sql, {"docs": docs, "path": path})
            return max(0, result.rowcount)

        return await run_bounded(self.engine, op, timeout_s or self.op_timeout_s)

    async def copy_replay(
        self,
        events: Sequence[AuditEvent],
        path: str = "file",
        *,
        timeout_s: float | None = None,
        before_commit: Callable[[], Awaitable[None]] | None = None,
    ) -> int:
        """Replay a batch of events (idempotent); returns how many rows were new."""
        return await self.copy_replay_json(
            [event.to_json_bytes() for event in events],
            path,
            timeout_s=timeout_s,
            before_commit=before_commit,
        )

    async def copy_replay_json(
        self,
        docs: Sequence[bytes],
        path: str = "file",
        *,
        can_conflict: bool = False,
        timeout_s: float | None = None,
        before_commit: Callable[[], Awaitable[None]] | None = None,
        sent: Callable[[], None] | None = None,
    ) -> int:
        """`copy_replay` for canonical event JSON (as the journal stores it): one typed
        COPY (`reference.audit.drain`), straight into the table unless a row is already
        there (or `can_conflict` says one may be), then through a staging table.
        `before_commit` is awaited once the rows are copied, before the commit (an error
        there rolls the batch back); `sent` is called once the rows are all handed to the
        connection (see `copy_into`).

        Raises `UndecodableRecord` when a document is not an event object, and the
        database's data error when a value is invalid (nothing is written then); callers
        validate and retry without the bad ones. Returns how many rows were new.
        """
        if not docs:
            return 0

        async def op(conn: AsyncConnection) -> int:
            raw = await conn.get_raw_connection()
            pg: psycopg.AsyncConnection[object] = raw.driver_connection  # type: ignore[assignment]
            added = await copy_into(
                pg,
                self.table,
                docs,
                path,
                on_conflict=self.ON_CONFLICT,
                can_conflict=can_conflict,
                sent=sent,
            )
            if before_commit is not None:
                await before_commit()
            return added

        return await run_bounded(self.engine, op, timeout_s or self.op_timeout_s)

    async def insert_dead_letters(
        self, letters: Sequence[DeadLetter], *, timeout_s: float | None = None
    ) -> int:
        """Record dead letters (idempotent per stream entry); returns how many were new."""
        if not letters:
            return 0
        sql = text(
            f"INSERT INTO {self.dead_letter_table} "
            "(stream, entry_id, event_id, raw, reason, deliveries) "
            "VALUES (:stream, :entry_id, :event_id, :raw, :reason, :deliveries) "
            "ON CONFLICT (stream, entry_id) DO NOTHING"
        )
        rows = [
            {
                "stream": letter.stream,
                "entry_id": letter.entry_id,
                "event_id": letter.event_id,
                "raw": letter.raw,
                "reason": letter.reason,
                "deliveries": letter.deliveries,
            }
            for letter in letters
        ]

        async def op(conn: AsyncConnection) -> int:
            result = await conn.execute(sql, rows)
            return max(0, result.rowcount)

        return await run_bounded(self.engine, op, timeout_s or self.op_timeout_s)

    # -- reads ----------------------------------------------------------------------------

    async def count(self, *, timeout_s: float | None = None) -> int:
        """Rows in the audit table."""

        async def op(conn: AsyncConnection) -> int:
            return int(
                (await conn.execute(text(f"SELECT count(*) FROM {self.table}"))).scalar_one()
            )

        return await run_bounded(self.engine, op, timeout_s or self.op_timeout_s)

    async def ids(self, *, timeout_s: float | None = None) -> list[uuid.UUID]:
        """Every `event_id` in the audit table (duplicates included, if a variant allows them)."""

        async def op(conn: AsyncConnection) -> list[uuid.UUID]:
            rows = await conn.execute(text(f"SELECT event_id FROM {self.table}"))
            return [row[0] for row in rows]

        return await run_bounded(self.engine, op, timeout_s or self.op_timeout_s)

    async def dead_letter_count(self, *, timeout_s: float | None = None) -> int:
        """Rows in the dead-letter table."""

        async def op(conn: AsyncConnection) -> int:
            sql = text(f"SELECT count(*) FROM {self.dead_letter_table}")
            return int((await conn.execute(sql)).scalar_one())

        return await run_bounded(self.engine, op, timeout_s or self.op_timeout_s)


def _payload_json(event: AuditEvent) -> str:
    """The payload's canonical JSON text."""
    return canonical_json(event.payload).decode("utf-8")
