"""Disk faults the filesystem can inject: disk full, I/O errors, read-only, per path pattern."""

from __future__ import annotations

import errno
import fnmatch
from dataclasses import dataclass

# fault name -> the errno its operations fail with
FAULT_ERRNO = {
    "disk-full": errno.ENOSPC,
    "eio": errno.EIO,
    "read-only": errno.EROFS,
    "off": errno.EIO,  # after a halting power cut: the machine is off, nothing lands
}
_ALL = frozenset({"write", "create", "fsync", "truncate", "remove", "rename", "chmod"})

# which kinds of operation each fault refuses
_REFUSES = {
    "disk-full": frozenset({"write", "create", "fsync", "truncate"}),
    "eio": frozenset({"write", "fsync"}),
    "read-only": _ALL,
    "off": _ALL,
}


@dataclass(frozen=True)
class ActiveFault:
    """One fault switched on, for paths matching `pattern` (fnmatch; '*' is every path)."""

    name: str
    pattern: str = "*"


class DiskFaults:
    """The faults switched on; `check` raises the errno of the first that applies."""

    def __init__(self) -> None:
        self._active: dict[str, ActiveFault] = {}

    def set(self, name: str, on: bool, pattern: str = "*") -> None:
        """Switch a fault on (for a pattern) or off. Unknown names raise ValueError."""
        if name not in FAULT_ERRNO:
            raise ValueError(f"unknown fault {name!r} (known: {', '.join(sorted(FAULT_ERRNO))})")
        if on:
            self._active[name] = ActiveFault(name, pattern or "*")
        else:
            self._active.pop(name, None)

    def clear(self) -> None:
        """Every fault off."""
        self._active.clear()

    def active(self) -> list[ActiveFault]:
        """The faults switched on."""
        return list(self._active.values())

    def check(self, operation: str, path: str | None) -> None:
        """Raise OSError when an active fault refuses `operation` on `path`."""
        for fault in self._active.values():
            if operation not in _REFUSES[fault.name]:
                continue
            if fault.pattern == "*" or (
                path is not None and fnmatch.fnmatchcase(path, fault.pattern)
            ):
                raise OSError(FAULT_ERRNO[fault.name], f"{fault.name} ({path})")

    def reports_full(self) -> bool:
        """statfs says 0 blocks free while the whole disk is full."""
        fault = self._active.get("disk-full")
        return fault is not None and fault.pattern == "*"
