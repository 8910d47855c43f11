"""The local stack from a relative base directory (what `make run` passes: `reports/...`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from scenarios.stack.local import start_local_stack

pytestmark = pytest.mark.integration


def test_a_relative_base_dir_starts_the_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis (its AOF on a FUSE disk), PostgreSQL and the disks get absolute paths: with a
    relative base directory Redis used to exit at start-up ("Write error writing append
    only file on disk: No such file or directory")."""
    monkeypatch.chdir(tmp_path)
    stack = start_local_stack(Path("reports/run/stack"))
    try:
        client = redis.Redis.from_url(stack.urls.redis_direct_url, socket_timeout=2)
        assert client.set("k", "v") and client.get("k") == b"v"
        client.close()
    finally:
        stack.close()
