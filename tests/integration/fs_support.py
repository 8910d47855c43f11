"""A forgetful mount for a test: skips (fails under STORMPROOF_REQUIRE_SERVICES=1) without FUSE."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from scenarios.fs.availability import unavailable_reason
from scenarios.fs.mount import ForgetfulMount, MountConfig
from scenarios.pytest_plugin import unavailable
from scenarios.stack.errors import StackError


@contextlib.contextmanager
def forgetful_mount(root: Path, name: str = "fs", seed: int = 0) -> Iterator[ForgetfulMount]:
    """Mount `root/backing` at `root/mnt`; always unmounted after."""
    reason = unavailable_reason()
    if reason:
        unavailable(f"FUSE is not available: {reason}")
    mount = ForgetfulMount(
        MountConfig(name, root / "backing", root / "mnt", root / "scratch", seed=seed)
    )
    try:
        mount.start()
    except StackError as exc:
        unavailable(str(exc))
    try:
        yield mount
    finally:
        mount.stop()


def backing_files(backing: Path) -> dict[str, bytes]:
    """Every regular file under the backing directory: relative path -> content."""
    found: dict[str, bytes] = {}
    for dirpath, _, filenames in os.walk(backing):
        for filename in filenames:
            path = Path(dirpath) / filename
            found[str(path.relative_to(backing))] = path.read_bytes()
    return found
