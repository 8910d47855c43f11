"""Power-cut and disk faults on the stack's forgetful disks, as reversible actions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from scenarios.fs.mount import ForgetfulMount

Revert = Callable[[], None]

# fault kind (as in FaultSpec) -> the filesystem's fault name
DISK_FAULTS = {"disk_full": "disk-full", "disk_eio": "eio", "disk_readonly": "read-only"}


class Killable(Protocol):
    """A process a power cut kills and the revert restarts."""

    def kill(self) -> None: ...

    def start(self, timeout_s: float = 30.0) -> None: ...


def power_cut(processes: Sequence[Killable], mount: ForgetfulMount, restart: bool = True) -> Revert:
    """SIGKILL the processes writing to `mount`, cut its power (tearing the last unsynced
    write), and return the revert: start them again on what the disk kept."""
    for process in processes:
        process.kill()
    mount.power_cut(tear=True)

    def start_again() -> None:
        if restart:
            for process in processes:
                process.start()

    return start_again


def disk_fault(mount: ForgetfulMount, kind: str, pattern: str = "*") -> Revert:
    """Switch a disk fault on for `pattern`; the revert switches it off."""
    name = DISK_FAULTS[kind]
    mount.set_fault(name, True, pattern)
    return lambda: _off(mount.set_fault(name, False))


def _off(_: object) -> None:
    return None
