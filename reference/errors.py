"""One way to put an exception into a log line or a reason string."""

from __future__ import annotations

__all__ = ["describe"]


def describe(exc: BaseException, *, limit: int | None = None) -> str:
    """`"TypeName: message"`, or just `"TypeName"` when the message is empty; with
    `limit`, the message's whitespace is collapsed and it is cut to `limit` characters."""
    text = str(exc) if limit is None else " ".join(str(exc).split())[:limit]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
