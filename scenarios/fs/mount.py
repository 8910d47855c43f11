"""Start, drive and always unmount one forgetful filesystem (its own process)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from scenarios.fs import control
from scenarios.fs.availability import unavailable_reason
from scenarios.stack.errors import StackError
from scenarios.stack.process import ManagedProcess


@dataclass(frozen=True)
class MountConfig:
    """Where the durable data lives, where it is mounted, and a scratch directory."""

    name: str
    backing: Path
    mountpoint: Path
    scratch: Path
    seed: int = 0


def is_mounted(mountpoint: Path) -> bool:
    """Is something mounted there (also true for a dead FUSE mount)?"""
    wanted = os.path.abspath(mountpoint)  # no stat: a dead FUSE mount fails every stat
    try:
        text = Path("/proc/self/mounts").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 1 and fields[1].replace("\\040", " ") in (wanted, str(mountpoint)):
            return True
    return False


def force_unmount(mountpoint: Path) -> None:
    """Lazy unmount (works on a dead FUSE mount too); quiet when nothing is mounted."""
    if not is_mounted(mountpoint):
        return
    for argv in (["fusermount3", "-u", "-z", str(mountpoint)], ["umount", "-l", str(mountpoint)]):
        try:
            subprocess.run(argv, capture_output=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if not is_mounted(mountpoint):
            return


class ForgetfulMount:
    """One mount: `start`, faults and power cuts through the control socket, `stop`."""

    def __init__(self, config: MountConfig) -> None:
        self.config = config
        self._process: ManagedProcess | None = None
        self._socket_dir: Path | None = None

    @property
    def control_socket(self) -> Path:
        """The control socket (in a short temp dir: AF_UNIX paths are limited to 107 bytes)."""
        if self._socket_dir is None:
            self._socket_dir = Path(tempfile.mkdtemp(prefix="stormproof-fs-"))
        return self._socket_dir / "control.sock"

    @property
    def mountpoint(self) -> Path:
        """Where the service should write."""
        return self.config.mountpoint

    @property
    def running(self) -> bool:
        """Is the filesystem process alive?"""
        return self._process is not None and self._process.running

    def start(self, timeout_s: float = 15.0) -> None:
        """Mount (raises StackError with the reason when FUSE is unavailable)."""
        reason = unavailable_reason()
        if reason:
            raise StackError(f"cannot mount {self.config.name}: {reason}")
        cfg = self.config
        for directory in (cfg.backing, cfg.mountpoint, cfg.scratch):
            directory.mkdir(parents=True, exist_ok=True)
        force_unmount(cfg.mountpoint)
        argv = [
            sys.executable,
            "-m",
            "scenarios.fs",
            str(cfg.backing),
            str(cfg.mountpoint),
            "--control",
            str(self.control_socket),
            "--state",
            str(cfg.scratch),
            "--seed",
            str(cfg.seed),
        ]
        self._process = ManagedProcess(
            f"fs-{cfg.name}",
            argv,
            log_path=cfg.scratch / "fs.log",
            ready=self._ready,
            death_signal=signal.SIGTERM,
        )
        try:
            self._process.start(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if not is_mounted(self.config.mountpoint):
            return False
        control.request(self.control_socket, {"cmd": "status"}, timeout_s=1.0)
        return True

    def stop(self) -> None:
        """Unmount (writing everything back when the process still answers); never raises."""
        try:
            if self._process is not None:
                self._process.stop(timeout_s=10.0)
        except StackError:
            pass
        finally:
            force_unmount(self.config.mountpoint)
            if self._socket_dir is not None:
                shutil.rmtree(self._socket_dir, ignore_errors=True)
                self._socket_dir = None

    def request(self, payload: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
        """One control request; raises control.ControlError."""
        return control.request(self.control_socket, payload, timeout_s)

    def power_cut(
        self, tear: bool = False, seed: int | None = None, halt: bool = False
    ) -> dict[str, Any]:
        """Drop everything not durable (the mount stays; its state becomes the backing's).

        `halt`: every write and fsync fails with EIO afterwards, until `clear_faults`.
        """
        return self.request({"cmd": "powercut", "tear": tear, "seed": seed, "halt": halt})

    def arm_cut(
        self, after_writes: int, tear: bool = False, seed: int | None = None, halt: bool = False
    ) -> dict[str, Any]:
        """Cut power right after `after_writes` more writes (between a write and its fsync)."""
        payload = {"cmd": "powercut", "after_writes": after_writes}
        return self.request({**payload, "tear": tear, "seed": seed, "halt": halt})

    def set_fault(self, name: str, on: bool = True, pattern: str = "*") -> dict[str, Any]:
        """disk-full | eio | read-only, on or off, for paths matching `pattern`."""
        return self.request({"cmd": "fault", "name": name, "on": on, "pattern": pattern})

    def clear_faults(self) -> dict[str, Any]:
        """Every disk fault off."""
        return self.request({"cmd": "clear"})

    def counters(self) -> dict[str, Any]:
        """Bytes written, fsyncs, bytes dropped by the last cut, the faults on."""
        return self.request({"cmd": "status"})

    def __enter__(self) -> ForgetfulMount:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
