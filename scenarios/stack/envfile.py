"""Read and write `.stormproof/stack.env` (KEY=VALUE lines)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from scenarios.stack.base import StackUrls
from scenarios.stack.errors import StackError


def write_env_file(path: Path, values: Mapping[str, str]) -> None:
    """Atomically replace `path` with one KEY=VALUE line per entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    os.replace(tmp, path)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a file; StackError when it is missing or malformed."""
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise StackError(f"{path}: not found (is a stack up? run `stormproof stack up`)") from exc
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip().isidentifier():
            raise StackError(f"{path}:{number}: malformed line {raw!r} (expected KEY=VALUE)")
        values[key.strip()] = value.strip()
    return values


def read_stack_urls(path: Path) -> StackUrls:
    """The stack's URLs from an env file (stack.env)."""
    return StackUrls.from_env(read_env_file(path), source=str(path))
