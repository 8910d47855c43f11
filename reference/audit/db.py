"""The audit's database access: an async engine on psycopg 3 and bounded operations.

`run_bounded` is the one way the audit talks to PostgreSQL: connect, run, commit, all under
one deadline. When the operation fails, times out or is cancelled, the connection is
invalidated (closed, never returned to the pool), so a half-used connection, perhaps still
waiting on a query sent into a black hole, can never serve the next caller. No rollback is
attempted on that path: against a black hole it would wait forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

__all__ = ["DatabaseConfig", "DbOp", "make_engine", "run_bounded"]

T = TypeVar("T")
DbOp = Callable[[AsyncConnection], Awaitable[T]]
"""An operation on a connection inside a transaction (committed by `run_bounded`)."""

_log = logging.getLogger(__name__)
_CLEANUP_TIMEOUT_S = 1.0
_ABANDONED: set[asyncio.Task[Any]] = set()
"""Operations given up on, still cleaning up: asyncio keeps only weak references to tasks,
so a fire-and-forget task needs a strong one somewhere (the documented idiom)."""


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    """Where the database is (a `postgresql+psycopg://` URL) and its timeouts."""

    url: str
    op_timeout_s: float = 2.0
    connect_timeout_s: float = 2.0


def make_engine(
    config: DatabaseConfig, *, pool_size: int = 10, max_overflow: int = 10, pre_ping: bool = False
) -> AsyncEngine:
    """An async engine on psycopg 3 for `config.url`, with a connect timeout.

    `pool_timeout` is bounded by the operation timeout: a caller never waits longer for a
    pooled connection than it would for the operation itself (`run_bounded` bounds both).
    No ping before each checkout (`pre_ping`, one round trip per operation): a connection
    that died while idle (an outage, a restart) is dealt with when it is first used, by
    `run_bounded` (the pool is discarded and the operation retried once on a fresh
    connection), so the first operation after healing does not fail either.
    """
    connect_timeout = max(1, round(config.connect_timeout_s))
    return create_async_engine(
        config.url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=config.op_timeout_s,
        pool_pre_ping=pre_ping,
        connect_args={"connect_timeout": connect_timeout},
    )


async def run_bounded(
    engine: AsyncEngine, op: DbOp[T], timeout_s: float, *, retry_dead: bool = True
) -> T:
    """Run `op(conn)` in a transaction and commit it; give up after `timeout_s`.

    Raises `TimeoutError` when the deadline passes (the outcome of a commit in flight is
    then unknown), or whatever `op` or the driver raised. On any failure, timeout or
    cancellation the connection is invalidated rather than returned to the pool.

    The operation runs in its own task, so that the caller gets its answer at the
    deadline: psycopg answers a cancelled query by sending the server a cancel request
    and waiting up to ~10 s for it (forever, were the server a black hole, without its
    own bound). That clean-up then finishes in the background, and the connection is
    discarded at its end.

    A pooled connection found dead (left over from an outage) is replaced and `op` run
    once more, unless `retry_dead` is False (a broken variant, for the tests).
    """
    task = asyncio.create_task(_in_transaction(engine, op, retry_dead))
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
    except BaseException:  # the caller was cancelled
        _abandon(task)
        raise
    if not done:
        _abandon(task)
        raise TimeoutError(f"database operation exceeded {timeout_s:g}s")
    return task.result()


async def _in_transaction(engine: AsyncEngine, op: DbOp[T], retry_dead: bool) -> T:
    """`op` in a transaction, committed; once more on a fresh connection when a pooled one
    turns out to be dead (the pool is not pinged before use).

    A connection found broken before the commit was sent cannot have committed anything
    (the server rolls back a transaction whose connection is gone), so the retry is safe
    for any `op`. The other connections left over from the same outage are discarded too
    (SQLAlchemy invalidates its pool on a disconnect it sees; an `op` that talks to the
    driver directly gets the pool disposed here), not tried one by one. A failure during
    the commit itself (unknown outcome) is never retried.
    """
    for attempt in (1, 2):
        conn: AsyncConnection | None = None
        committing = False
        try:
            conn = await engine.connect()
            await conn.begin()
            result = await op(conn)
            committing = True
            await conn.commit()
        except Exception as exc:
            dead = conn is not None and not committing and _dead(conn, exc)
            if conn is not None:
                await _discard(conn)
            if not (retry_dead and dead and attempt == 1):
                raise
            _log.info("audit db: a pooled connection was dead (%s); retrying", exc)
            if not isinstance(exc, DBAPIError):
                await _dispose(engine)
            continue
        except BaseException:
            if conn is not None:
                await _discard(conn)
            raise
        await _close(conn)
        return result
    raise AssertionError("unreachable")  # pragma: no cover


def _dead(conn: AsyncConnection, exc: Exception) -> bool:
    """Whether `exc` means the connection itself is gone (not the statement's fault)."""
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated)
    if not isinstance(exc, psycopg.OperationalError):
        return False
    try:
        driver = conn.sync_connection.connection.driver_connection  # type: ignore[union-attr]
    except Exception:
        return False
    return bool(getattr(driver, "broken", False) or getattr(driver, "closed", False))


async def _dispose(engine: AsyncEngine) -> None:
    """Close the pool's idle connections (bounded; errors only logged)."""
    try:
        async with asyncio.timeout(_CLEANUP_TIMEOUT_S):
            await engine.dispose()
    except Exception as exc:
        _log.warning("audit db: disposing of the pool failed: %r", exc)


def _abandon(task: asyncio.Task[T]) -> None:
    """Cancel `task` without waiting for it; keep it referenced until it is done."""
    task.cancel()
    _ABANDONED.add(task)
    task.add_done_callback(_forget)


def _forget(task: asyncio.Task[Any]) -> None:
    _ABANDONED.discard(task)
    if not task.cancelled() and task.exception() is not None:
        _log.debug("audit db: abandoned operation ended with %r", task.exception())


async def _discard(conn: AsyncConnection) -> None:
    """Invalidate and release `conn` without talking to the server (bounded).

    Shielded, so a second cancellation of the caller cannot leave the connection half
    discarded; errors are logged, never raised (they must not mask the original one).
    """
    try:
        async with asyncio.timeout(_CLEANUP_TIMEOUT_S):
            await asyncio.shield(_invalidate_and_close(conn))
    except Exception as exc:
        _log.warning("audit db: discarding a connection failed: %r", exc)


async def _invalidate_and_close(conn: AsyncConnection) -> None:
    with contextlib.suppress(Exception):
        await conn.invalidate()
    with contextlib.suppress(Exception):
        await conn.close()


async def _close(conn: AsyncConnection) -> None:
    """Return a healthy connection to the pool; a failure here only discards it."""
    try:
        async with asyncio.timeout(_CLEANUP_TIMEOUT_S):
            await conn.close()
    except Exception as exc:
        _log.warning("audit db: returning a connection failed: %r", exc)
        await _discard(conn)
