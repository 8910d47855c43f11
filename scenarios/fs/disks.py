"""The local stack's forgetful disks: one mount for Redis's `dir`, one for the targets' journals.

Started before Redis and stopped after it. Without FUSE the stack still runs, on plain
directories, and `unavailable` says why (power-cut and disk faults then fail with it).
"""

from __future__ import annotations

import secrets
from pathlib import Path

from scenarios.fs.availability import unavailable_reason
from scenarios.fs.mount import ForgetfulMount, MountConfig
from scenarios.stack.errors import StackError

DISKS = ("redis", "journal")


class StackDisks:
    """Mounts `<root>/<name>` over `<root>/<name>.backing` for each disk of the stack."""

    def __init__(self, root: Path, seed: int = 0) -> None:
        self.root = root
        self.mounts: dict[str, ForgetfulMount] = {}
        self.unavailable: str | None = None
        self._seed = seed

    def start(self) -> None:
        """Mount every disk (or note why not and use plain directories)."""
        self.unavailable = unavailable_reason()
        for name in DISKS:
            if self.unavailable is not None:
                self.path(name).mkdir(parents=True, exist_ok=True)
                continue
            mount = ForgetfulMount(
                MountConfig(
                    name,
                    backing=self.root / f"{name}.backing",
                    mountpoint=self.root / name,
                    scratch=self.root / f"{name}.fs",
                    seed=self._seed,
                )
            )
            try:
                mount.start()
            except StackError as exc:
                self.unavailable = str(exc)
                self.path(name).mkdir(parents=True, exist_ok=True)
                continue
            self.mounts[name] = mount

    def path(self, name: str) -> Path:
        """Where the service writes: the mount point (or the plain directory)."""
        return self.root / name

    def journal_root(self, label: str) -> Path:
        """A fresh directory on the journal disk for one run's target instances."""
        directory = self.path("journal") / f"{label}-{secrets.token_hex(4)}"
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def mount(self, name: str) -> ForgetfulMount:
        """The forgetful mount of a disk; StackError with the reason when there is none."""
        mount = self.mounts.get(name)
        if mount is None:
            why = self.unavailable or f"no disk named {name!r} (choose {', '.join(DISKS)})"
            raise StackError(f"no forgetful {name} disk: {why}")
        return mount

    def heal(self) -> None:
        """Every disk fault off (a power cut has nothing to undo)."""
        for mount in self.mounts.values():
            if mount.running:
                mount.clear_faults()

    def close(self) -> None:
        """Unmount every disk (never raises)."""
        mounts, self.mounts = self.mounts, {}
        for mount in mounts.values():
            mount.stop()
