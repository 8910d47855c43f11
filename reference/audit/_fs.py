"""Durable-file helpers shared by the journal, its quarantine and recovery's checkpoint.

One rule for directory fsync: `EINVAL` is ignored (the filesystem cannot sync a
directory: nothing more can be done, as PostgreSQL's `fsync_fname` decides); every other
error, `EIO` first, is raised. See docs/DECISIONS.md.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

__all__ = ["atomic_replace", "fsync_dir", "make_dirs", "write_all"]


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of `data` to `fd` (looping over short writes)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.EIO, "short write")
        view = view[written:]


def fsync_dir(directory: Path) -> None:
    """Make `directory`'s entries (creations, renames, removals) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # some filesystems cannot fsync a directory
            raise
    finally:
        os.close(fd)


def atomic_replace(path: Path, data: bytes) -> None:
    """Replace `path` with `data` durably: temporary file, fsync, rename, fsync the
    directory. On any failure the old file stays and the temporary one is removed."""
    tmp = path.with_name(f"{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def make_dirs(directory: Path, mode: int = 0o700) -> None:
    """`mkdir -p` made durable: each directory created is fsynced into its parent (not only
    the last one: a crash must not lose a created ancestor and with it everything below)."""
    missing: list[Path] = []
    current = directory
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=mode)
        fsync_dir(path.parent)
