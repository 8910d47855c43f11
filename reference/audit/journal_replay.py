"""`stormproof journal replay DIR --database-url URL`: replay a dead instance's journal.

The operator's tool for runbook step 3 (an instance that will not come back): from any
machine that can read the instance's backup directory and reach PostgreSQL, replay every
intact record into `audit_log`. It is the recovery job run by hand, not a second replay:
it drives `RecoveryJob.run_once` (its public API) with no live journal, so everything the
job guarantees holds here too: batches committed with ON CONFLICT DO NOTHING (idempotent:
running it twice replays nothing new, since replayed segments are removed), an atomic
checkpoint after each batch (an interrupted replay resumes where it stopped), corrupt
regions copied to ``DIR/quarantine/`` and every intact record around them replayed.

Before touching the database it checks the directory: with an HMAC key, a key that does
not match the journal, or a chain break that is not explained by a corrupt region (an
edited or deleted record), refuses with one line; `--ignore-chain` replays anyway.

Exit codes: 0 replayed (or nothing to do), 1 refused (a tampered journal, another
recovery running, records left), 2 bad input or the database unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from reference.audit.db import DatabaseConfig, make_engine
from reference.audit.journal_cli import DEFAULT_KEY_ENV, verify_journal
from reference.audit.journal_format import hmac_key_from_text
from reference.audit.recovery import RecoveryConfig, RecoveryJob, RecoveryResult
from reference.audit.store import AuditStore

ProgressHook = Callable[[int, int], None]
"""Called with (records done, records to do)."""

_CORRUPT_EXPLAINED = "after a corrupt region"
_MAX_RUNS = 20


class ReplayRefused(Exception):
    """The journal must not be replayed as it is (the message is one line)."""


class DatabaseUnreachable(Exception):
    """PostgreSQL did not answer (the message is one line)."""


@dataclass(frozen=True)
class ReplayOptions:
    """What to replay, where to, and how."""

    directory: Path
    database_url: str = field(repr=False)
    hmac_key: bytes | None = field(default=None, repr=False)
    ignore_chain: bool = False
    batch_size: int = 5000
    timeout_s: float = 10.0
    table: str = "audit_log"


@dataclass(frozen=True)
class ReplaySummary:
    """What a replay did."""

    segments: int
    pending_before: int
    replayed: int
    inserted: int
    quarantined: int
    remaining: int
    wall_s: float
    hmac_checked: bool

    def line(self) -> str:
        """The one-line summary printed at the end."""
        return (
            f"replayed {self.replayed} records ({self.inserted} new rows, "
            f"{self.replayed - self.inserted} already present) from {self.segments} segments; "
            f"quarantined {self.quarantined}; remaining {self.remaining}; "
            f"HMAC chain {'verified' if self.hmac_checked else 'not checked (no key)'}; "
            f"{self.wall_s:.1f}s"
        )


def sqlalchemy_url(url: str) -> str:
    """`url` with the psycopg 3 driver (postgresql:// and postgres:// accepted)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres", "postgresql+psycopg"):
        raise ValueError("--database-url must be a postgresql:// URL")
    return f"postgresql+psycopg://{rest}"


def check_journal(directory: Path, key: bytes | None, ignore_chain: bool) -> int:
    """Verify CRCs and (with `key`) the HMAC chain; returns the number of segments.

    Raises ReplayRefused when the key does not match or the chain is broken by something
    other than a corrupt region (which recovery quarantines).
    """
    report = verify_journal(directory, key)
    if key is None or ignore_chain:
        return report.segments
    wrong_key = [b for b in report.breaks if "header MAC mismatch" in b.reason]
    if report.segments and len({b.segment for b in wrong_key}) == report.segments:
        raise ReplayRefused(
            "the HMAC key does not match this journal (every segment header fails): "
            "refusing to replay; check the key"
        )
    unexplained = [b for b in report.breaks if _CORRUPT_EXPLAINED not in b.reason]
    if unexplained:
        first = unexplained[0]
        raise ReplayRefused(
            f"HMAC chain broken ({len(unexplained)} breaks, first: {first.segment.name} "
            f"@{first.offset}: {first.reason}): refusing to replay (--ignore-chain to force)"
        )
    return report.segments


async def replay(options: ReplayOptions, progress: ProgressHook | None = None) -> ReplaySummary:
    """Check the journal, then replay it through the recovery job until nothing is left.

    Raises ReplayRefused, DatabaseUnreachable (nothing replayed past the last committed
    batch, whose checkpoint is kept), OSError for an unreadable directory.
    """
    started = time.monotonic()
    segments = await asyncio.to_thread(
        check_journal, options.directory, options.hmac_key, options.ignore_chain
    )
    engine = make_engine(
        DatabaseConfig(sqlalchemy_url(options.database_url), options.timeout_s, options.timeout_s),
        pool_size=1,
        max_overflow=1,
    )
    try:
        store = AuditStore(engine, table=options.table, op_timeout_s=options.timeout_s)
        config = RecoveryConfig(
            options.directory,
            batch_size=options.batch_size,
            batch_timeout_s=options.timeout_s,
            hmac_key=options.hmac_key,
        )
        job = RecoveryJob(config, store)
        pending = await job.backlog()
        replayed = inserted = quarantined = 0
        try:
            await store.ensure_schema(options.timeout_s)
            for _ in range(_MAX_RUNS):
                result = await _run_with_progress(job, pending, replayed, progress)
                if result.busy:
                    raise ReplayRefused(
                        f"{options.directory}: another recovery is running on this directory"
                    )
                replayed += result.replayed
                inserted += result.inserted
                quarantined += result.quarantined
                if result.remaining == 0 or result.replayed == 0:
                    break
        except (ReplayRefused, asyncio.CancelledError):
            raise
        except Exception as exc:  # the driver's errors, timeouts: one line for the operator
            raise DatabaseUnreachable(
                f"database unreachable after {replayed} records ({_one_line(exc)}); "
                "progress is checkpointed: run the same command again"
            ) from exc
        remaining = await job.backlog()
    finally:
        await engine.dispose()
    if progress is not None:
        progress(pending - remaining, pending)
    return ReplaySummary(
        segments,
        pending,
        replayed,
        inserted,
        quarantined,
        remaining,
        time.monotonic() - started,
        options.hmac_key is not None,
    )


async def _run_with_progress(
    job: RecoveryJob, pending: int, done_before: int, progress: ProgressHook | None
) -> RecoveryResult:
    """One `run_once`, reporting progress from the job's backlog while it runs."""
    if progress is None:
        return await job.run_once()
    run = asyncio.create_task(job.run_once())
    try:
        while not run.done():
            await asyncio.wait({run}, timeout=0.2)
            with contextlib.suppress(OSError):
                progress(max(done_before, pending - await job.backlog()), pending)
        return run.result()
    finally:
        if not run.done():
            run.cancel()
            with contextlib.suppress(BaseException):
                await run


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def build_parser() -> argparse.ArgumentParser:
    """The arguments of `stormproof journal replay`."""
    parser = argparse.ArgumentParser(
        prog="stormproof journal replay",
        description="Replay a journal directory (a dead instance's AUDITORIA_BACKUP_PATH) "
        "into audit_log: idempotent, resumable, corrupt records quarantined.",
    )
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The replay's arguments (shared with the `stormproof` parser)."""
    parser.add_argument("directory", metavar="DIR", type=Path, help="the journal directory")
    parser.add_argument(
        "--database-url",
        default=None,
        help="postgresql://... of the audit database (default: $DATABASE_URL)",
    )
    parser.add_argument(
        "--hmac-key-env",
        metavar="VAR",
        default=DEFAULT_KEY_ENV,
        help=f"variable holding the journal's HMAC key (default {DEFAULT_KEY_ENV})",
    )
    parser.add_argument(
        "--ignore-chain", action="store_true", help="replay even when the HMAC chain is broken"
    )
    parser.add_argument("--batch-size", type=int, default=5000, help="records per transaction")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per database call")
    parser.add_argument("--table", default="audit_log", help="the audit table")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def options_from_args(args: argparse.Namespace) -> ReplayOptions:
    """ReplayOptions from parsed arguments; ValueError with a one-line reason."""
    url = args.database_url or os.environ.get("DATABASE_URL")
    if not url:
        raise ValueError("--database-url (or $DATABASE_URL) is required")
    sqlalchemy_url(url)
    if not args.directory.is_dir():
        raise ValueError(f"{args.directory}: not a directory")
    if args.batch_size < 1 or args.timeout <= 0:
        raise ValueError("--batch-size must be >= 1 and --timeout > 0")
    key_text = os.environ.get(args.hmac_key_env)
    try:
        key = hmac_key_from_text(key_text) if key_text else None
    except ValueError as exc:
        raise ValueError(f"{args.hmac_key_env}: {exc}") from exc
    return ReplayOptions(
        args.directory, url, key, args.ignore_chain, args.batch_size, args.timeout, args.table
    )


def run_cli(args: argparse.Namespace) -> int:
    """Run a parsed `journal replay`; prints a progress bar and a one-line summary."""
    try:
        options = options_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    console = Console(stderr=True)
    try:
        if args.quiet:
            summary = asyncio.run(replay(options))
        else:
            with Progress(
                TextColumn("replay"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as bar:
                task = bar.add_task("replay", total=None)

                def report(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=max(total, 1))

                summary = asyncio.run(replay(options, report))
    except ReplayRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2 if "does not match" in str(exc) else 1
    except DatabaseUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {args.directory}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(summary.line())
    return 0 if summary.remaining == 0 else 1


def main(argv: list[str] | None = None) -> int:
    """`python -m reference.audit.journal_replay DIR --database-url URL`."""
    return run_cli(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
