"""Dead letters: list them, and re-drive the valid events among them into `audit_log`.

A dead letter is a stream entry the queue worker gave up on: something that is not an
event (malformed, foreign), or an event the database rejected row by row. After the cause
is fixed (a column widened, a constraint relaxed, an older release's bug), the events can
be moved back:

    stormproof audit dead-letters             # what is there, by reason (read only)
    stormproof audit dead-letters --redrive   # insert the valid events, remove them

(also `python -m reference.audit.dead_letters [--redrive]`). The database is the one in
`$DATABASE_URL` (another variable with `--database-url-env`). Re-driving is idempotent
(`ON CONFLICT (event_id) DO NOTHING`): a letter is removed only after its event is
committed, so an interrupted run is simply run again. Entries that are not events, and
events the database still rejects, stay where they are, and are counted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from reference.audit.db import DatabaseConfig, make_engine, run_bounded
from reference.audit.event import AuditEvent, InvalidAuditEvent
from reference.audit.store import POISON_ERRORS, AuditStore, DeadLetter
from reference.audit.stream import clean_reason
from reference.config import Settings
from reference.errors import describe

__all__ = [
    "DeadLetterReport",
    "RedriveResult",
    "list_dead_letters",
    "main",
    "redrive",
    "rejected_letter",
    "store_dead_letters",
]

_log = logging.getLogger(__name__)
DEFAULT_URL_ENV = "DATABASE_URL"
REDRIVE_PATH = "redrive"
_POISON = POISON_ERRORS


def rejected_letter(
    stream: str, entry_id: str, event: AuditEvent, rejections: int, exc: BaseException
) -> DeadLetter:
    """The dead letter for an event the database rejected `rejections` times."""
    return DeadLetter(
        stream=stream,
        entry_id=entry_id,
        raw=event.to_json_bytes(),
        reason=clean_reason(f"rejected by the database {rejections} times: {describe(exc)}"),
        deliveries=rejections,
        event_id=event.event_id,
    )


async def store_dead_letters(
    store: AuditStore, letters: Sequence[DeadLetter], timeout_s: float
) -> None:
    """Store `letters`; one the database refuses is its own poison: stored alone, and if
    refused again, without its raw bytes and with a plain reason (never blocking the rest).
    Failures that are not the data's (the connection, a timeout) propagate."""
    try:
        await store.insert_dead_letters(letters, timeout_s=timeout_s)
        return
    except _POISON as exc:
        if getattr(exc, "connection_invalidated", False):
            raise
        _log.warning("dead letters refused (%s); storing them one by one", type(exc).__name__)
    for letter in letters:
        try:
            await store.insert_dead_letters([letter], timeout_s=timeout_s)
        except _POISON as exc:
            if getattr(exc, "connection_invalidated", False):
                raise
            bare = DeadLetter(
                stream=letter.stream,
                entry_id=letter.entry_id,
                raw=b"",
                reason=f"unstorable entry (its dead letter was refused: {type(exc).__name__})",
                deliveries=letter.deliveries,
                event_id=letter.event_id,
            )
            await store.insert_dead_letters([bare], timeout_s=timeout_s)


@dataclass(frozen=True)
class DeadLetterReport:
    """What the dead-letter table holds: total, valid events, and counts by reason."""

    total: int
    events: int
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RedriveResult:
    """One re-drive: letters moved to audit_log, rows new there, and letters left."""

    redriven: int
    inserted: int
    not_events: int
    rejected: int


async def _rows(store: AuditStore, timeout_s: float) -> list[tuple[str, str, bytes, str]]:
    sql = text(
        f"SELECT stream, entry_id, raw, reason FROM {store.dead_letter_table} ORDER BY dead_at"
    )

    async def op(conn: AsyncConnection) -> list[tuple[str, str, bytes, str]]:
        return [(r[0], r[1], bytes(r[2]), r[3]) for r in await conn.execute(sql)]

    return await run_bounded(store.engine, op, timeout_s)


def _event(raw: bytes) -> AuditEvent | None:
    try:
        return AuditEvent.from_json_bytes(raw)
    except InvalidAuditEvent:
        return None


async def list_dead_letters(store: AuditStore, timeout_s: float = 30.0) -> DeadLetterReport:
    """Count the dead letters, the valid events among them, and their reasons."""
    rows = await _rows(store, timeout_s)
    reasons = Counter(_reason_kind(reason) for _, _, _, reason in rows)
    events = sum(1 for _, _, raw, _ in rows if _event(raw) is not None)
    return DeadLetterReport(len(rows), events, dict(reasons))


async def redrive(store: AuditStore, timeout_s: float = 30.0) -> RedriveResult:
    """Insert every valid event among the dead letters, then remove those letters."""
    await store.ensure_schema(timeout_s)
    rows = await _rows(store, timeout_s)
    valid = [(s, e, ev) for s, e, raw, _ in rows if (ev := _event(raw)) is not None]
    not_events = len(rows) - len(valid)
    done: list[tuple[str, str]] = []
    inserted = rejected = 0
    try:
        inserted = await store.insert_many([ev for _, _, ev in valid], REDRIVE_PATH)
        done = [(s, e) for s, e, _ in valid]
    except _POISON:
        for stream, entry_id, event in valid:
            try:
                inserted += await store.insert_one(event, REDRIVE_PATH)
            except _POISON:
                rejected += 1
                continue
            done.append((stream, entry_id))
    if done:
        delete = text(
            f"DELETE FROM {store.dead_letter_table} WHERE stream = :stream AND entry_id = :entry"
        )

        async def op(conn: AsyncConnection) -> None:
            await conn.execute(delete, [{"stream": s, "entry": e} for s, e in done])

        await run_bounded(store.engine, op, timeout_s)
    return RedriveResult(len(done), inserted, not_events, rejected)


def _reason_kind(reason: str) -> str:
    """The reason up to its first colon (`malformed: ...` -> `malformed`)."""
    return reason.split(":", 1)[0].strip() or "unknown"


async def _run(url: str, do_redrive: bool) -> int:
    config = DatabaseConfig(url=Settings(database_url=url).sqlalchemy_url)
    engine = make_engine(config, pool_size=1, max_overflow=0)
    store = AuditStore(engine)
    try:
        report = await list_dead_letters(store)
        print(f"dead letters: {report.total} ({report.events} valid events)")
        for reason, count in sorted(report.reasons.items()):
            print(f"  {count:8d}  {reason}")
        if do_redrive:
            result = await redrive(store)
            print(
                f"re-driven: {result.redriven} ({result.inserted} new rows in "
                f"{store.table}); left: {result.not_events} not events, "
                f"{result.rejected} still rejected"
            )
            return 0 if result.rejected == 0 else 1
        return 0
    finally:
        await engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    """`dead-letters [--redrive] [--database-url-env VAR]`: 0 ok, 1 some left, 2 error."""
    parser = argparse.ArgumentParser(
        prog="stormproof audit dead-letters",
        description="List the audit dead letters; --redrive moves valid events to audit_log.",
    )
    parser.add_argument("--redrive", action="store_true", help="insert the valid events")
    parser.add_argument(
        "--database-url-env",
        metavar="VAR",
        default=DEFAULT_URL_ENV,
        help=f"environment variable holding the database URL (default {DEFAULT_URL_ENV})",
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    url = os.environ.get(args.database_url_env)
    if not url:
        print(f"error: ${args.database_url_env} is not set", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(url, args.redrive))
    except Exception as exc:
        text_ = " ".join(str(exc).split())[:200]
        print(f"error: {type(exc).__name__}: {text_}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
